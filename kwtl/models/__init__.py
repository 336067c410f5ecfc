"""The FCRN network, the segmentation estimator, its model files and pretrained weights.

Performance internals (BatchNorm folding, channels-last pooling, precision resolution, the
torch patch dataset) live in private modules (``kwtl.models._fold``, ``_segmenter``) and are
not part of the API.
"""

from ._fcrn import FCRN
from ._io import ModelFileError, read_weights, save_weights
from ._loss import WeightedBCEWithLogitsLoss
from ._recipe import FineTuneRecipe, paper_recipe
from ._pretrained import AUTHORS_COMMIT, PRETRAINED, load_pretrained, pretrained_path
from ._segmenter import FCRNSegmenter

__all__ = [
    "AUTHORS_COMMIT",
    "FCRN",
    "FCRNSegmenter",
    "FineTuneRecipe",
    "paper_recipe",
    "ModelFileError",
    "PRETRAINED",
    "WeightedBCEWithLogitsLoss",
    "load_pretrained",
    "pretrained_path",
    "read_weights",
    "save_weights",
]
