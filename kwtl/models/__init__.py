"""The FCRN network and the segmentation estimator."""
from ._fcrn import FCRN, enable_mc_dropout, switch_to_affine
from ._io import ModelFileError, read_weights, save_weights
from ._fold import ChannelsLastMaxPool2d, SingleOutputConv2d, fold_batchnorm
from ._loss import WeightedBCEWithLogitsLoss, weighted_bce_with_logits
from ._segmenter import FCRNSegmenter, PatchDataset, resolve_precision

__all__ = [
    "ChannelsLastMaxPool2d",
    "FCRN",
    "FCRNSegmenter",
    "ModelFileError",
    "PatchDataset",
    "SingleOutputConv2d",
    "WeightedBCEWithLogitsLoss",
    "enable_mc_dropout",
    "fold_batchnorm",
    "read_weights",
    "resolve_precision",
    "save_weights",
    "switch_to_affine",
    "weighted_bce_with_logits",
]
