"""Shared validation, conversion and seeding helpers.

:mod:`kwtl.utils.validation` holds the checks of what users pass (images, masks,
parameters); the intensity and mask policies live in private modules re-exported here.

Process-wide settings (``kwtl.utils._allocator.tune_malloc``) belong to applications (the
``kwtl`` command line), not to the library.
"""

from ._cache import quiet_damaged_cache_logs
from ._intensity import PERCENTILES, as_uint8_image, normalize_uint8
from ._masks import as_mask, colour_labels, mask_classes, masks_to_foreground
from ._random import derive_seed
from .validation import (
    InvalidParameterError,
    check_images,
    check_masks,
    check_training_masks,
    validate_params,
)

__all__ = [
    "InvalidParameterError",
    "PERCENTILES",
    "as_mask",
    "as_uint8_image",
    "check_images",
    "check_masks",
    "check_training_masks",
    "colour_labels",
    "derive_seed",
    "mask_classes",
    "masks_to_foreground",
    "normalize_uint8",
    "validate_params",
]

quiet_damaged_cache_logs()  # a damaged cache entry is recomputed with one log line
