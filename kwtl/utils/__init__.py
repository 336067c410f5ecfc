"""Shared validation, conversion and seeding helpers."""
from ._allocator import tune_malloc
from ._cache import quiet_damaged_cache_logs
from ._image import (PERCENTILES, as_mask, as_uint8_image, check_images, check_masks,
                     check_training_masks, mask_classes, normalize_uint8,
                     patch_foreground_counts)
from ._validation import InvalidParameterError, validate_params
from ._random import derive_seed

__all__ = [
    "InvalidParameterError",
    "PERCENTILES",
    "as_mask",
    "as_uint8_image",
    "check_images",
    "check_masks",
    "check_training_masks",
    "derive_seed",
    "mask_classes",
    "normalize_uint8",
    "patch_foreground_counts",
    "quiet_damaged_cache_logs",
    "tune_malloc",
    "validate_params",
]

quiet_damaged_cache_logs()  # a damaged cache entry is recomputed with one log line
