"""Shared validation, conversion and seeding helpers.

Process-wide settings (``kwtl.utils._allocator.tune_malloc``) belong to applications (the
``kwtl`` command line), not to the library.
"""
from ._image import as_mask, as_uint8_image, check_images, check_masks, normalize_uint8
from ._random import derive_seed

__all__ = [
    "as_mask",
    "as_uint8_image",
    "check_images",
    "check_masks",
    "derive_seed",
    "normalize_uint8",
]
