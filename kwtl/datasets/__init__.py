"""Loading microscopy datasets, the synthetic benchmark, and patch extraction."""
from ._download import download_sstem
from ._folder import BENCHMARK_FOLDERS, load_benchmark, load_folder, read_image, read_mask
from ._patches import PatchSet, extract_patches, patch_coordinates, stitch_patches
from ._synthetic import SYNTHETIC_DOMAINS, make_cells, make_synthetic_benchmark

__all__ = [
    "BENCHMARK_FOLDERS",
    "PatchSet",
    "SYNTHETIC_DOMAINS",
    "download_sstem",
    "extract_patches",
    "load_benchmark",
    "load_folder",
    "make_cells",
    "make_synthetic_benchmark",
    "patch_coordinates",
    "read_image",
    "read_mask",
    "stitch_patches",
]
