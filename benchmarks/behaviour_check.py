"""Side-by-side check that a restructuring left the method's numbers unchanged.

Run the same script from two checkouts (e.g. the commit before a change and after it), each
writing its results to a folder, then compare the folders::

    cd OLD_CHECKOUT && PYTHONPATH=$PWD python /path/to/behaviour_check.py record /tmp/old
    cd NEW_CHECKOUT && PYTHONPATH=$PWD python benchmarks/behaviour_check.py record /tmp/new
    python benchmarks/behaviour_check.py compare /tmp/old /tmp/new

``record`` uses only the public API both versions share, on one thread:

* ``kwtl run --target em --repeats 1 --shots 1`` (the embedded synthetic benchmark): the
  result records, apart from their ``seconds``;
* selections on 3 real ssTEM images (the authors' ssTEM PLFT weights, 256² candidates on a
  stride-128 grid) for every registered selector: ``select_support`` with and without a score
  cache, and ``kwtl.workflow.select`` (patches, no PLFT epochs);
* weights: Reptile (``FCRNSegmenter.meta_fit`` and ``kwtl.workflow.pretrain``) on real B5 and
  TNBC images, the PLFT and fine-tuned models of ``FewShotSegmentation.fit`` on 3 ssTEM
  crops, and ``kwtl.workflow.finetune`` on masks drawn from the ssTEM ground truth.

``compare`` prints one line per item: equal (bit for bit) or how it differs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
if not SHARED.exists():
    SHARED = Path("/work/shared")


def _state(segmenter):
    return {k: v.detach().cpu().numpy() for k, v in segmenter.module_.state_dict().items()}


def _save_state(path, segmenter):
    np.savez(path, **_state(segmenter))


def record(out):
    import torch

    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kwtl",
            "run",
            "--target",
            "em",
            "--repeats",
            "1",
            "--shots",
            "1",
            "--out",
            str(out / "run"),
            "--threads",
            "1",
            "--no-progress",
        ],
        check=True,
        env=env,
    )
    _selections(out)
    _weights(out)


def _ssTEM(n=3):
    from kwtl.datasets import load_benchmark

    bench = load_benchmark(str(SHARED / "data"), names=["ssTEM"])
    order = np.argsort(bench.names)[:n]
    return (
        [bench.images[i] for i in order],
        [np.asarray(bench.masks[i]) > 0 for i in order],
        [bench.names[i] for i in order],
    )


def _selections(out):
    import tempfile

    import joblib
    import pandas as pd

    from kwtl.datasets import PatchSet, write_image
    from kwtl.models import load_pretrained
    from kwtl.selection import SELECTORS, make_selector
    from kwtl.workflow import select

    images, _, names = _ssTEM()
    seg = load_pretrained(
        "authors:ssTEM", source=SHARED / "weights", precision="fp32", patch_size=256, stride=128
    )
    pool = PatchSet.from_images(images, 256, 128)
    folder = out / "ssTEM3"
    for image, name in zip(images, names):
        write_image(folder / f"{Path(name).stem}.png", image, overwrite=True)
    model_file = out / "authors_ssTEM.kwtl"
    if not model_file.exists():
        from kwtl.workflow import save_model

        save_model(seg, model_file)
    selections = {}
    for name in SELECTORS:
        for mode in ("plain", "memory"):
            with tempfile.TemporaryDirectory() as tmp:
                selector = make_selector(name, random_state=0)
                memory = joblib.Memory(tmp, verbose=0) if mode == "memory" else None
                support = selector.select_support(
                    pool, seg, n_shots=1, patches_per_shot=10, memory=memory
                )
                selections[f"{name}/{mode}"] = {
                    "indices": support.indices.tolist(),
                    "scores": [float(v) for v in np.ravel(support.scores)],
                }
        result = select(
            folder, model_file, 4, out / "select" / name, selector=name, pl_epochs=0, progress=False
        )
        table = pd.read_csv(out / "select" / name / "selection.csv")
        selections[f"{name}/workflow"] = {
            "indices": table[["source_image", "row", "col"]].astype(str).agg(" ".join, 1).tolist(),
            "scores": table["score"].tolist(),
        }
        del result
    (out / "selections.json").write_text(json.dumps(selections, indent=1))


def _weights(out):
    from kwtl import FewShotSegmentation
    from kwtl.datasets import load_benchmark, write_image, write_mask
    from kwtl.models import FCRNSegmenter
    from kwtl.selection import EntropySelector
    from kwtl.workflow import finetune, load_model, pretrain, select

    def tiny(**kw):
        return FCRNSegmenter(
            module__width=8,
            patch_size=64,
            stride=64,
            meta_iterations=3,
            inner_steps=3,
            meta_shots=4,
            batch_size=8,
            precision="fp32",
            random_state=0,
            **kw,
        )

    sources = {}
    for name in ("B5_sub_DSB2018_fluo360", "TNBC_sub_NuInsSeg"):
        bench = load_benchmark(str(SHARED / "data"), names=[name])
        order = np.argsort(bench.names)[:2]
        sources[name] = (
            [bench.images[i] for i in order],
            [np.asarray(bench.masks[i]) > 0 for i in order],
        )
    X = [im for ims, _ in sources.values() for im in ims]
    y = [m for _, ms in sources.values() for m in ms]
    groups = np.repeat([1, 2], 2)
    weights = out / "weights"
    weights.mkdir(exist_ok=True)
    _save_state(weights / "reptile_meta_fit.npz", tiny().meta_fit(X, y, groups))
    for name, (ims, ms) in sources.items():
        for i, (im, m) in enumerate(zip(ims, ms)):
            write_image(out / "src" / name / "images" / f"{i}.png", im, overwrite=True)
            write_mask(out / "src" / name / "masks" / f"{i}.png", m, overwrite=True)
    seg = pretrain(
        [out / "src" / n for n in sources],
        out / "pretrained.kwtl",
        width=8,
        patch_size=64,
        stride=64,
        meta_iterations=3,
        inner_steps=3,
        meta_shots=4,
        segmenter_params={"batch_size": 8, "precision": "fp32"},
        progress=False,
        overwrite=True,
    )
    _save_state(weights / "reptile_workflow_pretrain.npz", seg)

    images, masks, names = _ssTEM()
    crops = [im[:256, :256] for im in images]
    crop_masks = [m[:256, :256] for m in masks]
    method = FewShotSegmentation(
        tiny(),
        selector=EntropySelector(),
        n_shots=1,
        patches_per_shot=4,
        pl_epochs=1,
        pl_batch_size=8,
        finetune_epochs=2,
        random_state=0,
    )
    method.fit(X + crops, y + crop_masks, np.r_[groups, [-3] * 3])
    _save_state(weights / "estimator_plft.npz", method.plft_segmenter_)
    _save_state(weights / "estimator_finetuned.npz", method.segmenter_)
    np.save(weights / "estimator_support.npy", method.support_indices_)

    todo = out / "todo"
    select(
        out / "ssTEM3",
        out / "pretrained.kwtl",
        4,
        todo,
        selector="random",
        pl_epochs=1,
        progress=False,
        overwrite=True,
    )
    import pandas as pd

    truth = {Path(n).stem: m for n, m in zip(names, masks)}
    for row in pd.read_csv(todo / "selection.csv", dtype={"source_image": str}).itertuples():
        r, c = int(row.row), int(row.col)
        write_mask(
            todo / row.mask_file, truth[row.source_image][r : r + 64, c : c + 64], overwrite=True
        )
    tuned = finetune(todo, out / "tuned.kwtl", epochs=2, progress=False, overwrite=True)
    _save_state(weights / "workflow_plft.npz", load_model(todo / "model_plft.kwtl"))
    _save_state(weights / "workflow_finetune.npz", tuned)


def compare(old, new):
    old, new = Path(old), Path(new)
    lines = []

    def records(root):
        out = {}
        for path in sorted((root / "run" / "results").glob("*.json")):
            rec = json.loads(path.read_text())
            out[path.name] = {k: v for k, v in rec.items() if "seconds" not in k}
        return out

    a, b = records(old), records(new)
    lines.append(
        f"kwtl run records: {len(a)} old, {len(b)} new; "
        + (
            "all equal apart from seconds"
            if a == b and a
            else "DIFFER: " + ", ".join(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        )
    )
    sa = json.loads((old / "selections.json").read_text())
    sb = json.loads((new / "selections.json").read_text())
    for key in sorted(set(sa) | set(sb)):
        same = sa.get(key) == sb.get(key)
        lines.append(
            f"selection {key}: "
            + (
                "equal (indices and scores)"
                if same
                else f"DIFFERS: old {sa.get(key, {}).get('indices')}, "
                f"new {sb.get(key, {}).get('indices')}"
            )
        )
    for path in sorted((old / "weights").glob("*")):
        other = new / "weights" / path.name
        if path.suffix == ".npy":
            same = np.array_equal(np.load(path), np.load(other))
            lines.append(f"{path.stem}: {'equal' if same else 'DIFFERS'}")
            continue
        with np.load(path) as x, np.load(other) as y:
            diff = max(float(np.abs(x[k].astype(np.float64) - y[k]).max()) for k in x.files)
            same = all(np.array_equal(x[k], y[k]) for k in x.files) and x.files == y.files
        lines.append(
            f"weights {path.stem}: "
            + ("bit-identical" if same else f"DIFFER (max |difference| {diff:.3g})")
        )
    print("\n".join(lines))


if __name__ == "__main__":
    command, *folders = sys.argv[1:]
    if command == "record":
        record(*folders)
    elif command == "compare":
        compare(*folders)
    else:
        sys.exit(f"unknown command {command!r}: record OUT, or compare OLD NEW")
