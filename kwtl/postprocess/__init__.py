"""Post-processing of predicted masks: splitting the foreground into instances."""

from ._instances import label_instances

__all__ = ["label_instances"]
