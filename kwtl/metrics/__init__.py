"""Segmentation metrics."""
from ._iou import SMOOTH, iou_score, mean_iou, mean_iou_scorer

__all__ = ["SMOOTH", "iou_score", "mean_iou", "mean_iou_scorer"]
