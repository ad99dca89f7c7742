"""Model families, one per file; each exposes ``build(spec, **overrides)``."""
from .base import Detector, VideoDetector

__all__ = ["Detector", "VideoDetector"]
