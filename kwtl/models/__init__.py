"""The FCRN network, the segmentation estimator and its model files.

Performance internals (BatchNorm folding, channels-last pooling, precision resolution, the
torch patch dataset) live in private modules (``kwtl.models._fold``, ``_segmenter``) and are
not part of the API.
"""
from ._fcrn import FCRN
from ._io import ModelFileError, read_weights, save_weights
from ._loss import WeightedBCEWithLogitsLoss
from ._segmenter import FCRNSegmenter

__all__ = ["FCRN", "FCRNSegmenter", "ModelFileError", "WeightedBCEWithLogitsLoss",
           "read_weights", "save_weights"]
