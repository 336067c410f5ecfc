"""Named experiment profiles: every size, epoch count and option of a run in one place."""

import copy

from ..selection._registry import PAPER_SELECTORS

__all__ = ["PROFILES", "get_profile"]

_SELECTORS = PAPER_SELECTORS
# ``kwtl run``'s embedded default also runs the label-free selectors added for the
# drawn-area benchmark, so a user sees them beside random (and what the report says of them)
_QUICK_SELECTORS = PAPER_SELECTORS + ("spread_random", "object_richness", "typicality")

PROFILES = {
    # The embedded default of ``kwtl run``: synthetic data, a few minutes on 2 CPU cores.
    "quick": {
        "description": "synthetic benchmark, small network and patches; minutes on a laptop CPU",
        "data": {"n_images": 10, "image_size": 96, "random_state": 0},
        "targets": ["em", "fluorescence"],
        "selectors": _QUICK_SELECTORS,
        "shots": (1, 3, 5),
        "repeats": 3,
        "segmenter": {
            "module__width": 16,
            "module__init": "default",
            "patch_size": 32,
            "stride": 16,
            "lr": 1e-3,
            "batch_size": 16,
            "meta_iterations": 30,
            "inner_steps": 10,
            "meta_shots": 8,
            "inner_lr": 1e-3,
        },
        "patches_per_shot": 10,
        "pl_epochs": 20,
        "pl_batch_size": 32,
        # the library's default support fine-tuning (FineTuneRecipe(): 250 steps of batch 8,
        # flips and quarter turns); the cpu and paper profiles keep the paper's epochs
        "finetune_recipe": {},
        "finetune_epochs": None,
        "pseudo_labeler": "default",
        "transductive_plft": False,
        "min_foreground": None,
        "magnitude": 1.3,
    },
    # Real data on 2 CPU cores, under an hour for ssTEM + EM (see benchmarks/results/).
    "cpu": {
        "description": (
            "real data on CPU: 64x64 patches on a stride-64 grid, FCRN width 16, "
            "short Reptile/PLFT/fine-tuning schedules, 3 repeats on the authors' "
            "splits, the authors' foreground filter scaled to 23 px"
        ),
        "targets": ["ssTEM", "EM"],
        "selectors": _SELECTORS,
        "shots": (1, 3, 5),
        "repeats": 3,
        "segmenter": {
            "module__width": 16,
            "module__init": "default",
            "patch_size": 64,
            "stride": 64,
            "lr": 1e-3,
            "batch_size": 32,
            "meta_iterations": 60,
            "inner_steps": 10,
            "meta_shots": 8,
            "inner_lr": 1e-3,
            "max_pixels": 2**25,
        },
        "patches_per_shot": {"ssTEM": 40, "EM": 40, "default": 40},
        "pl_epochs": 2,
        "pl_batch_size": 64,
        "finetune_epochs": 15,
        "pseudo_labeler": "paper",
        "transductive_plft": False,
        # the authors' 360-pixel ground-truth filter scaled to the patch area:
        # 360 * (64 / 256) ** 2 = 22.5; it reads labels, like the paper's protocol
        "min_foreground": 23,
        "magnitude": 1.3,
    },
    # The paper's sizes; meant for a GPU.
    "paper": {
        "description": "the paper's sizes: 256x256 patches, Reptile 300x30, PLFT 100 epochs, "
        "fine-tuning 20 epochs, 10 repeats, PLFT on all target images, 360-pixel filter",
        "targets": ["ssTEM", "EM"],
        "selectors": _SELECTORS,
        "shots": (1, 3, 5, 7, 10),
        "repeats": 10,
        "segmenter": {"patch_size": 256, "stride": 30, "batch_size": 64, "max_pixels": 2**25},
        "source_strides": {"B5": 140, "B39": 55, "TNBC": 20, "EM": 85, "ssTEM": 32},
        "target_strides": {"B5": 30, "B39": (50, 26), "TNBC": 28, "EM": 30, "ssTEM": 30},
        "patches_per_shot": {
            "TNBC": 100,
            "EM": 400,
            "ssTEM": 500,
            "B5": 100,
            "B39": 100,
            "default": 100,
        },
        "pl_epochs": 100,
        "pl_batch_size": 128,
        "finetune_epochs": 20,
        "pseudo_labeler": "paper",
        "transductive_plft": True,
        "min_foreground": 360,
        "recalibrate_batchnorm": False,  # the authors' momentum running statistics
        "magnitude": {"B5": 1.7, "B39": 1.7, "default": 1.3},
    },
}


def get_profile(name, **overrides):
    """A deep copy of profile ``name`` with ``overrides`` applied (None values ignored)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    profile = copy.deepcopy(PROFILES[name])
    profile["name"] = name
    profile.update({k: v for k, v in overrides.items() if v is not None})
    return profile


def per_target(value, target):
    """A profile value that may be a ``{target: value, "default": value}`` mapping."""
    if isinstance(value, dict):
        return value.get(target, value.get("default"))
    return value
