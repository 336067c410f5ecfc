"""Shared validation, conversion and seeding helpers."""
from ._allocator import tune_malloc
from ._image import as_mask, as_uint8_image, check_images, check_masks, normalize_uint8
from ._random import derive_seed

__all__ = [
    "as_mask",
    "as_uint8_image",
    "check_images",
    "check_masks",
    "derive_seed",
    "normalize_uint8",
    "tune_malloc",
]
