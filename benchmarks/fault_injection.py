"""Bad inputs and injected faults: what is refused, what is recomputed, what is lost.

Runs the experiment runner behind ``kwtl run`` on the embedded synthetic benchmark with a
tiny version of the quick profile (one target, 8 jobs; see ``TINY``) in a child process,
the way ``kwtl run`` does:

1. the run killed with SIGKILL after its first results, then the same command again:
   every result written before the kill must be unchanged and the run must complete;
2. every cache entry (joblib ``output.pkl``) and one result file truncated to half, then the
   same command again: the damaged entries are recomputed, reported in one line each;
3. ``kwtl run --out`` on a folder holding a user's ``report.md``/``results.csv``/
   ``results.json``: refused, exit code 2, files unchanged;
4. a saved model file with 200 corrupted bytes, truncated, emptied, replaced by text:
   each refused with a ``ModelFileError``, the estimator unchanged;
5. the bad-input test matrix (``tests/test_bad_input.py`` and friends): how many cases
   were tried and how many got a clear error.

Usage::

    PYTHONPATH=$PWD python benchmarks/fault_injection.py \
        --json benchmarks/results/fault_injection.json
"""

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _hashes(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).glob("*.json"))
    }


#: The quick profile made tiny so that a run takes seconds on a busy 2-core machine.
TINY = {
    "data": {"n_images": 6, "image_size": 64, "random_state": 0},
    "segmenter": {
        "module__width": 4,
        "module__init": "default",
        "patch_size": 32,
        "stride": 16,
        "lr": 1e-3,
        "batch_size": 16,
        "meta_iterations": 3,
        "inner_steps": 2,
        "meta_shots": 4,
        "precision": "fp32",
    },
    "patches_per_shot": 4,
    "pl_epochs": 2,
    "finetune_epochs": 2,
}

_CHILD = """
import sys, warnings
from kwtl.cli import _one_line_warning
from kwtl.experiments import run_experiment
warnings.formatwarning = _one_line_warning
run_experiment(sys.argv[1], profile="quick", targets=["em"], selectors=["random", "entropy"],
               shots=(1, 2), repeats=2, progress=False, profile_overrides={tiny})
"""


def _kwtl_run(out):
    return [sys.executable, "-c", _CHILD.replace("{tiny}", repr(TINY)), str(out)]


def _kwtl_cli(out):
    return [sys.executable, "-m", "kwtl", "run", "--no-progress", "--out", str(out)]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def kill_and_resume(tmp):
    out = tmp / "run"
    started = time.perf_counter()
    proc = subprocess.Popen(
        _kwtl_run(out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    results = out / "results"
    while proc.poll() is None and len(list(results.glob("*.json"))) < 2:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _hashes(results)
    again = subprocess.run(_kwtl_run(out), env=_env(), capture_output=True, text=True)
    after = _hashes(results)
    lost = sum(1 for name, digest in before.items() if after.get(name) != digest)
    return {
        "jobs": 8,
        "finished_before_kill": len(before),
        "exit_code_after_resume": again.returncode,
        "finished_after_resume": len(after),
        "results_lost": lost,
        "tmp_files_left": len(list(results.glob("*.tmp"))),
        "seconds": round(time.perf_counter() - started, 1),
    }, out


def truncated_cache(out):
    damaged = 0
    for pkl in out.joinpath("cache").rglob("output.pkl"):
        data = pkl.read_bytes()
        pkl.write_bytes(data[: len(data) // 2])
        damaged += 1
    results = sorted(out.joinpath("results").glob("*.json"))
    results[0].write_bytes(results[0].read_bytes()[:20])
    before = _hashes(out / "results")
    run = subprocess.run(_kwtl_run(out), env=_env(), capture_output=True, text=True)
    after = _hashes(out / "results")
    warning_lines = [ln for ln in run.stderr.splitlines() if "damaged" in ln]
    traceback_lines = [ln for ln in run.stderr.splitlines() if "Traceback" in ln]
    intact_lost = sum(
        1
        for name, digest in before.items()
        if name != results[0].name and after.get(name) != digest
    )
    return {
        "cache_entries_truncated": damaged,
        "result_files_truncated": 1,
        "exit_code": run.returncode,
        "finished_after": len(after),
        "damage_warning_lines": len(warning_lines),
        "traceback_lines": len(traceback_lines),
        "intact_results_changed": intact_lost,
        "truncated_result_recomputed": json.loads(results[0].read_text()).get("miou") is not None,
    }


def users_folder(tmp):
    mine = tmp / "mine"
    mine.mkdir()
    for name, text in (("report.md", "notes\n"), ("results.csv", "a\n"), ("results.json", "{}")):
        (mine / name).write_text(text)
    before = _hashes(mine) | {"report.md": hashlib.sha256(b"notes\n").hexdigest()}
    run = subprocess.run(_kwtl_cli(mine), env=_env(), capture_output=True, text=True)
    after = _hashes(mine) | {
        "report.md": hashlib.sha256((mine / "report.md").read_bytes()).hexdigest()
    }
    return {
        "exit_code": run.returncode,
        "stderr_lines": len(run.stderr.strip().splitlines()),
        "message": run.stderr.strip(),
        "files_changed": sum(before[k] != after.get(k) for k in before),
        "files_added": len(set(os.listdir(mine)) - {"report.md", "results.csv", "results.json"}),
    }


def model_files(tmp):
    import torch

    from kwtl.datasets import make_cells
    from kwtl.models import FCRNSegmenter, ModelFileError

    images, masks = make_cells(2, 32, random_state=0)
    seg = FCRNSegmenter(
        module__width=2, patch_size=16, stride=16, max_epochs=1, precision="fp32", random_state=0
    ).fit(images, masks)
    path = tmp / "model.pt"
    outcomes = {}

    def damage(kind):
        seg.save_params(f_params=path)
        data = bytearray(path.read_bytes())
        if kind == "200 corrupted bytes":
            for k in range(200):
                data[len(data) // 2 + k] ^= 0xFF
        elif kind == "truncated":
            data = data[: len(data) // 2]
        elif kind == "empty":
            data = b""
        elif kind == "text":
            data = b"not weights\n"
        path.write_bytes(bytes(data))

    for kind in ("200 corrupted bytes", "truncated", "empty", "text"):
        damage(kind)
        target = FCRNSegmenter(
            module__width=2, patch_size=16, stride=16, precision="fp32", random_state=1
        ).initialize()
        before = {k: v.clone() for k, v in target.module_.state_dict().items()}
        try:
            target.load_params(f_params=path)
            outcomes[kind] = {"refused": False}
        except ModelFileError as exc:
            unchanged = all(
                torch.equal(before[k], v) for k, v in target.module_.state_dict().items()
            )
            outcomes[kind] = {
                "refused": True,
                "estimator_unchanged": unchanged,
                "message": str(exc).replace(str(tmp), "<tmp>"),
            }
    return outcomes


def test_matrix():
    files = [
        "tests/test_bad_input.py",
        "tests/models/test_model_files.py",
        "tests/test_cli_output_folder.py",
        "tests/datasets/test_folder_pairs.py",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    tail = run.stdout.strip().splitlines()[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", tail)}
    return {"files": files, "summary": tail, **counts}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    report = {
        "command": "PYTHONPATH=$PWD python benchmarks/fault_injection.py"
        + (f" --json {args.json}" if args.json else "")
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report["kill_9_and_resume"], out = kill_and_resume(tmp)
        report["truncated_cache_and_result"] = truncated_cache(out)
        report["users_output_folder"] = users_folder(tmp)
        report["model_files"] = model_files(tmp)
    report["bad_input_matrix"] = test_matrix()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
