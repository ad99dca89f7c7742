"""vfe_hub: published video, long-tail and open-vocabulary detectors and trackers, one line away.

>>> import vfe_hub
>>> model = vfe_hub.load("mamba_r101_dc5_vid")          # doctest: +SKIP
>>> frames = model.predict("clip.mp4", batch_size=4)   # doctest: +SKIP
"""
from .api import list_models, load, model_info
from .errors import VfeHubError
from .models.base import Detector, VideoDetector
from .pipeline import pipeline
from .structures import Detections

__version__ = "0.1.0"

__all__ = ["Detections", "Detector", "VfeHubError", "VideoDetector", "list_models", "load", "model_info", "pipeline"]
