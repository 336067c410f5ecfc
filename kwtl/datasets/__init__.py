"""Reading and writing image files, loading microscopy datasets, the synthetic benchmark, and patch extraction."""

from ._augment import PatchAugmenter, dihedral
from ._download import download_sstem
from ._folder import BENCHMARK_FOLDERS, MASK_SUFFIX, load_benchmark, load_folder, load_images
from ._formats import IMAGE_EXTENSIONS, MASK_EXTENSIONS, read_image, read_mask, read_stack
from ._patches import PatchSet, extract_patches, patch_coordinates, stitch_patches
from ._synthetic import SYNTHETIC_DOMAINS, make_cells, make_synthetic_benchmark
from ._writing import write_image, write_mask

__all__ = [
    "BENCHMARK_FOLDERS",
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "MASK_SUFFIX",
    "PatchAugmenter",
    "PatchSet",
    "SYNTHETIC_DOMAINS",
    "dihedral",
    "download_sstem",
    "extract_patches",
    "load_benchmark",
    "load_folder",
    "load_images",
    "make_cells",
    "make_synthetic_benchmark",
    "patch_coordinates",
    "read_image",
    "read_mask",
    "read_stack",
    "stitch_patches",
    "write_image",
    "write_mask",
]
