"""The FCRN network and the segmentation estimator.

Performance internals (BatchNorm folding, channels-last pooling, precision resolution, the
torch patch dataset) live in private modules (``kwtl.models._fold``, ``_segmenter``) and are
not part of the API.
"""
from ._fcrn import FCRN
from ._loss import WeightedBCEWithLogitsLoss
from ._segmenter import FCRNSegmenter

__all__ = ["FCRN", "FCRNSegmenter", "WeightedBCEWithLogitsLoss"]
