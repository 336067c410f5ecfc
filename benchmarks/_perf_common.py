"""Shared helpers of the benchmark scripts: peak-RSS measurement, data, environment, tables.

Not part of kwtl; imported by ``bench_scoring.py``, ``bench_training.py`` and
``bench_predict.py`` (run them as ``python benchmarks/<script>.py``).
"""

import json
import math
import os
import platform
import resource
import sys
import threading
from pathlib import Path

import torch

from kwtl.datasets import make_cells, read_image, read_mask
from kwtl.utils import as_mask
from kwtl.models._segmenter import resolve_precision
from kwtl.utils._allocator import tune_malloc

_HERE = Path(__file__).resolve().parent
DEFAULT_DATA = _HERE.parent.parent / "shared" / "data"
DEFAULT_SPLITS = _HERE.parent.parent / "shared" / "reference" / "splits.json"
_EXTENSIONS = (".png", ".tif", ".tiff")
_MIB = 1024.0


# ============================================================================================
# memory
# ============================================================================================
def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def ru_maxrss_mib(who=resource.RUSAGE_SELF):
    value = resource.getrusage(who).ru_maxrss
    return value / (1024.0 * 1024.0) if sys.platform == "darwin" else value / _MIB


def current_rss_mib():
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib / _MIB
    import psutil

    return psutil.Process().memory_info().rss / (1024.0 * 1024.0)


def peak_rss_mib():
    """Peak RSS of this process since start (or since the last reset), MiB."""
    kib = _status_kib("VmHWM")
    return kib / _MIB if kib is not None else ru_maxrss_mib()


_PROCESS_PEAK = [0.0]


def process_peak_rss_mib():
    """Peak RSS of this process over its whole life (survives the per-phase resets)."""
    return max(_PROCESS_PEAK[0], peak_rss_mib())


def _reset_peak_rss():
    """Reset the kernel's high-water mark (Linux >= 4.0); False if not possible."""
    _PROCESS_PEAK[0] = max(_PROCESS_PEAK[0], peak_rss_mib())
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak RSS (MiB) reached inside a ``with`` block.

    Exact on Linux (the kernel's high-water mark is reset on entry, ``/proc/self/clear_refs``);
    elsewhere RSS is sampled every 10 ms by a background thread.
    """

    def __enter__(self):
        self.exact = _reset_peak_rss()
        self.start = current_rss_mib()
        self._samples = [self.start]
        if not self.exact:
            self._stop = threading.Event()

            def sample():
                while not self._stop.wait(0.01):
                    self._samples.append(current_rss_mib())

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.exact:
            self.peak = peak_rss_mib()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._samples + [current_rss_mib()])
        _PROCESS_PEAK[0] = max(_PROCESS_PEAK[0], self.peak)
        return False


# ============================================================================================
# data
# ============================================================================================
def image_files(folder):
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _EXTENSIONS
    )


def mask_for(image_file):
    masks = image_file.parent.parent / "masks"
    for ext in _EXTENSIONS:
        candidate = masks / (image_file.stem + ext)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no mask for {image_file} in {masks}")


def split_files(data_root, splits_path=None, dataset="EM"):
    """``(pool_files, test_files)`` of a dataset: the authors' split 0 if available.

    EM: 132 pool (``unlabelled[0]``) and 33 test images of the sorted file list; without
    ``splits.json`` the last ``floor(0.2 n)`` files are the test set.
    """
    files = image_files(Path(data_root) / dataset / "images")
    if not files:
        return [], []
    table = None
    if splits_path is not None and Path(splits_path).is_file():
        try:
            table = json.loads(Path(splits_path).read_text()).get(dataset)
        except (OSError, ValueError):
            table = None
    if table is not None:
        pool_idx = [int(i) for i in table["unlabelled"]["0"]]
        test_idx = [int(i) for i in table["test"]["0"]]
        if max(pool_idx + test_idx) < len(files) and len(pool_idx) + len(test_idx) == len(files):
            return [files[i] for i in pool_idx], [files[i] for i in test_idx]
    n_test = max(1, int(math.floor(0.2 * len(files))))
    return files[: len(files) - n_test], files[len(files) - n_test :]


def load_images(files, masks=False):
    images = [read_image(f) for f in files]
    if not masks:
        return images, None
    return images, [as_mask(read_mask(mask_for(f)), name=str(f)) for f in files]


def synthetic_images(n, patch_size, seed, masks=False, domain="em"):
    """EM-like synthetic images of the EM image size (768 x 1024) when no data is found."""
    shape = (max(768, 2 * patch_size), max(1024, 2 * patch_size))
    images, truth = make_cells(n_images=n, image_size=shape, domain=domain, random_state=seed)
    return list(images), (list(truth) if masks else None)


def repeat_to(arrays, n):
    """``n`` arrays, cycling through ``arrays`` by reference (no copy)."""
    return [arrays[i % len(arrays)] for i in range(n)]


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def add_process_args(parser):
    """``--threads`` and ``--malloc``: the process settings every benchmark records."""
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--malloc",
        choices=("default", "tuned"),
        default="default",
        help="'tuned' calls kwtl.utils._allocator.tune_malloc() at start-up (as `kwtl run` "
        "does): freed large buffers are reused instead of re-mapped; it "
        "applies to the whole process, i.e. to both the reference and kwtl",
    )


def setup_process(args):
    """Apply ``--threads`` and ``--malloc`` to this process (workers call it too)."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    args.malloc_applied = tune_malloc() if getattr(args, "malloc", "default") == "tuned" else False


def environment(args):
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = set()
        for line in info.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        isa = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    except OSError:
        isa = []
    amp = resolve_precision(args.precision, args.device)
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "isa": isa,
        "device": str(args.device),
        "precision": args.precision,
        "resolved_precision": "fp32" if amp is None else "bf16",
        "channels_last": amp is not None,
        "malloc": "tuned" if getattr(args, "malloc_applied", False) else "default",
    }
    if torch.device(args.device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def print_env(env):
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))


def _fmt(value, spec):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def print_table(rows, columns):
    header = [c[0] for c in columns]
    body = [
        [_fmt(r.get(c[1]), c[2]) if c[2] else str(r.get(c[1], "-")) for c in columns] for r in rows
    ]
    widths = [
        max(len(h), *(len(line[i]) for line in body)) if body else len(h)
        for i, h in enumerate(header)
    ]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for line in body:
        print("  ".join(v.rjust(w) for v, w in zip(line, widths)))


def write_json(path, results):
    """Write a script's results as JSON (``--json``), creating the folder; no-op for None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"results written to {path}")
