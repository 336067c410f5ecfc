"""The FCRN network and the segmentation estimator."""
from ._fcrn import FCRN, enable_mc_dropout, switch_to_affine
from ._fold import ChannelsLastMaxPool2d, SingleOutputConv2d, fold_batchnorm
from ._loss import WeightedBCEWithLogitsLoss, weighted_bce_with_logits
from ._segmenter import FCRNSegmenter, PatchDataset, resolve_precision
from ._features import encoder_features, image_encoder_maps, window_means
from ._pretrained import AUTHORS_COMMIT, PRETRAINED, load_pretrained, pretrained_path

__all__ = [
    "ChannelsLastMaxPool2d",
    "FCRN",
    "FCRNSegmenter",
    "PatchDataset",
    "SingleOutputConv2d",
    "WeightedBCEWithLogitsLoss",
    "enable_mc_dropout",
    "fold_batchnorm",
    "resolve_precision",
    "switch_to_affine",
    "weighted_bce_with_logits",
    "AUTHORS_COMMIT",
    "PRETRAINED",
    "encoder_features",
    "image_encoder_maps",
    "load_pretrained",
    "pretrained_path",
    "window_means",
]
