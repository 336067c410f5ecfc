"""Segmentation metrics."""

from ._iou import iou_score, mean_iou, mean_iou_scorer

__all__ = ["iou_score", "mean_iou", "mean_iou_scorer"]
