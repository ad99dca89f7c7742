"""Benchmark metrics: ImageNet VID AP50 with FGFA's motion-speed buckets (the MEGA / vfe.pytorch V1 protocol)."""
from .imagenet_vid import BUCKETS, evaluate
from .imagenet_vid_data import (VidFrame, VidGroundTruth, compute_motion_iou, load_coco_vid, load_vid_xml,
                                 motion_iou_table)

__all__ = ["BUCKETS", "VidFrame", "VidGroundTruth", "compute_motion_iou", "evaluate", "load_coco_vid",
           "load_vid_xml", "motion_iou_table"]
