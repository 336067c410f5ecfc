"""The data, models and the two training loops (plain fp32 reference, kwtl) of
``bench_training.py``. Not part of kwtl."""

import argparse
import copy
import time

import numpy as np
import torch

from kwtl.models import FCRNSegmenter
from kwtl.models._loss import weighted_bce_with_logits

from _perf_common import PeakRSS, load_images, split_files, sync, synthetic_images

_DOMAINS = {"EM": "em", "ssTEM": "sstem"}


# ============================================================================================
# data and model
# ============================================================================================
def _micro(value):
    if value is None or str(value).lower() in ("none", "0", "full"):
        return None
    return int(value)


def _config(text):
    """``"precision:micro"`` -> (precision, micro_batch_size or None)."""
    precision, _, micro = str(text).partition(":")
    if precision not in ("auto", "fp32", "bf16"):
        raise argparse.ArgumentTypeError(
            f"bad configuration {text!r}: precision must be "
            "auto, fp32 or bf16 (e.g. 'auto:8', 'bf16:none')"
        )
    return precision, _micro(micro or None)


def training_data(args, dataset, n_images, role="pool"):
    """Images and masks: the dataset's pool (or test) images, else synthetic."""
    pool_files, test_files = split_files(args.data, args.splits, dataset)
    files = pool_files if role == "pool" else test_files
    if files and not args.synthetic:
        images, masks = load_images(files[:n_images], masks=True)
        return images, masks, f"{dataset} {role} images ({len(images)}) from {args.data}"
    seed = args.seed + (0 if role == "pool" else 1000)
    images, masks = synthetic_images(
        n_images, args.patch_size, seed, masks=True, domain=_DOMAINS.get(dataset, "em")
    )
    return images, masks, f"synthetic {_DOMAINS.get(dataset, 'em')} images ({n_images})"


def make_segmenter(args, batch_size, precision="fp32", micro=None, lr=None, init=None, seed=None):
    seg = FCRNSegmenter(
        module__width=args.width,
        module__init=init or args.init,
        patch_size=args.patch_size,
        stride=args.stride,
        batch_size=batch_size,
        micro_batch_size=micro,
        precision=precision,
        lr=args.lr if lr is None else lr,
        weight_decay=args.weight_decay,
        random_state=args.seed if seed is None else seed,
        device=args.device,
    )
    return seg.initialize()


def initial_state(args, init=None, seed=None):
    """The common starting point: ``--weights`` or the seeded FCRN, switched to affine BN."""
    seg = make_segmenter(args, 8, init=init, seed=seed)
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        if "conv1.1.weight" in state:
            seg.to_affine()
            seg.module_.load_state_dict(state)
        else:
            seg.module_.load_state_dict(state)
            seg.to_affine()
    else:
        seg.to_affine()
    return {k: v.detach().clone().contiguous() for k, v in seg.module_.state_dict().items()}


def kwtl_segmenter(args, state, batch_size, precision, micro, lr=None):
    seg = make_segmenter(args, batch_size, precision=precision, micro=micro, lr=lr)
    seg.to_affine()  # same structure as the state; fresh optimizer
    seg.module_.load_state_dict(state)
    seg.module_.train()
    return seg


def reference_module(args, state):
    """The reference network: fp32, NCHW (contiguous) weights, train mode."""
    seg = make_segmenter(args, 8, precision="fp32")
    seg.to_affine()
    module = copy.deepcopy(seg.module_).to(memory_format=torch.contiguous_format)
    module.load_state_dict(state)
    return module.train()


def _as_input(batch_uint8, device):
    x = torch.from_numpy(np.ascontiguousarray(batch_uint8)).to(device=device)
    return x.to(torch.float32).div_(127.5).sub_(1.0).unsqueeze(1)


def _as_target(batch_mask, device):
    return (
        torch.from_numpy(np.ascontiguousarray(batch_mask))
        .to(device=device, dtype=torch.float32)
        .unsqueeze(1)
    )


class ReferenceTrainer:
    """The authors' way: fp32 NCHW, whole batch, Adam(lr, weight_decay), weighted BCE."""

    def __init__(self, module, lr, weight_decay, device):
        self.module, self.device = module, device
        self.optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)

    def step(self, xb, yb):
        self.module.train()
        x, y = _as_input(xb, self.device), _as_target(yb, self.device)
        self.optimizer.zero_grad()
        loss = weighted_bce_with_logits(self.module(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


class KwtlTrainer:
    """``FCRNSegmenter.train_step`` on a ``(uint8 images, float masks)`` batch, as ``fit``'s
    DataLoader delivers it."""

    def __init__(self, seg):
        self.seg = seg

    def step(self, xb, yb):
        x = torch.from_numpy(np.ascontiguousarray(xb))[:, None]
        y = torch.from_numpy(np.ascontiguousarray(yb)).to(torch.float32)[:, None]
        return float(self.seg.train_step((x, y))["loss"])


def run_steps(trainer, batches, warmup, device):
    """Untimed warm-up steps, then timed steps; return (seconds, losses, peak RSS, growth)."""
    losses = []
    with PeakRSS() as mem:
        for xb, yb in batches[:warmup]:
            losses.append(trainer.step(xb, yb))
        sync(device)
        t0 = time.perf_counter()
        for xb, yb in batches[warmup:]:
            losses.append(trainer.step(xb, yb))
        sync(device)
        seconds = time.perf_counter() - t0
    return seconds, losses, mem.peak, mem.peak - mem.start


def _cuda_peak(device):
    if torch.device(device).type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        return peak
    return None
