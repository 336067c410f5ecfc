"""`kwtl run` and the experiment runner: outputs, resume, errors, Dask."""

import json

import numpy as np
import pytest

from kwtl.cli import main
from kwtl.experiments import Experiment, run_experiment

TINY = {
    "data": {
        "n_images": 5,
        "image_size": 32,
        "random_state": 0,
        "domains": ["fluorescence", "em", "histology"],
    },
    "segmenter": {
        "module__width": 4,
        "module__init": "default",
        "patch_size": 16,
        "stride": 16,
        "lr": 1e-3,
        "batch_size": 8,
        "meta_iterations": 2,
        "inner_steps": 2,
        "meta_shots": 2,
        "precision": "fp32",
    },
    "patches_per_shot": 2,
    "pl_epochs": 1,
    "pl_batch_size": 8,
    "finetune_epochs": 1,
}


def tiny_experiment(out, **kw):
    params = dict(
        targets=["em"],
        selectors=["consistency", "random"],
        shots=(1, 2),
        repeats=2,
        profile_overrides=TINY,
    )
    params.update(kw)
    return Experiment(out, profile="quick", **params)


def test_runner_writes_every_job_and_report(tmp_path):
    exp = run_experiment(
        tmp_path / "out",
        profile="quick",
        targets=["em"],
        selectors=["consistency", "random"],
        shots=(1, 2),
        repeats=2,
        profile_overrides=TINY,
        progress=False,
    )
    records = exp.records()
    assert len(records) == 8 and not exp.pending()
    r = records[0]
    assert {
        "target",
        "selector",
        "n_shots",
        "repeat",
        "miou",
        "per_image_iou",
        "support",
        "plft_miou",
        "test_images",
        "pool_images",
    } <= set(r)
    assert len(r["support"]) == r["n_shots"] * 2 and len(r["test_images"]) == 1
    assert not set(r["test_images"]) & set(r["pool_images"])
    for name in ["report.md", "results.csv", "results.json", "wilcoxon.csv", "miou_vs_shots.png"]:
        assert (tmp_path / "out" / name).exists(), name
    assert "consistency" in (tmp_path / "out" / "report.md").read_text()


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch):
    import kwtl.experiments._runner as runner

    out = tmp_path / "out"
    exp = tiny_experiment(out)
    calls = []
    real = runner._run_job

    def flaky(experiment, job):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the 4th job
        calls.append(job)
        return real(experiment, job)

    monkeypatch.setattr(runner, "_run_job", flaky)
    with pytest.raises(KeyboardInterrupt):
        exp.run(progress=False)
    done = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert len(done) == 3
    assert not list((out / "results").glob("*.tmp"))  # nothing half-written

    monkeypatch.setattr(runner, "_run_job", real)
    again = tiny_experiment(out)
    assert len(again.pending()) == 5
    again.run(progress=False)
    assert not again.pending()
    for name, mtime in done.items():  # finished results are neither recomputed nor rewritten
        assert (out / "results" / name).stat().st_mtime_ns == mtime
    # the resumed run equals an uninterrupted one
    fresh = tiny_experiment(tmp_path / "fresh")
    fresh.run(progress=False)
    a = {(r["selector"], r["n_shots"], r["repeat"]): r["miou"] for r in again.records()}
    b = {(r["selector"], r["n_shots"], r["repeat"]): r["miou"] for r in fresh.records()}
    assert a == pytest.approx(b)


def test_output_folder_of_another_experiment_is_refused(tmp_path):
    out = tmp_path / "out"
    tiny_experiment(out, shots=(1,), repeats=1, selectors=["random"]).run(progress=False)
    with pytest.raises(ValueError, match="different experiment"):
        tiny_experiment(out, random_state=1).run(progress=False)
    # more jobs of the same experiment are fine (resume / extend)
    tiny_experiment(out, shots=(1, 2), repeats=1, selectors=["random"]).run(progress=False)


def test_runner_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown targets"):
        tiny_experiment(tmp_path, targets=["nope"])
    with pytest.raises(ValueError, match="unknown selector"):
        tiny_experiment(tmp_path, selectors=["best"])
    with pytest.raises(ValueError, match="unknown profile"):
        Experiment(tmp_path, profile="fast")
    with pytest.raises(FileNotFoundError, match="data folder"):
        Experiment(tmp_path, data=tmp_path / "missing")


def test_dask_backend_runs_the_same_jobs(tmp_path):
    distributed = pytest.importorskip("distributed")
    import joblib

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_config(backend="dask"),
    ):
        exp = tiny_experiment(tmp_path / "dask", shots=(1,), repeats=2)
        exp.run(progress=False, n_jobs=2)
    assert len(exp.records()) == 4
    local = tiny_experiment(tmp_path / "local", shots=(1,), repeats=2)
    local.run(progress=False)
    a = sorted((r["selector"], r["repeat"], r["miou"]) for r in exp.records())
    b = sorted((r["selector"], r["repeat"], r["miou"]) for r in local.records())
    assert [x[:2] for x in a] == [x[:2] for x in b]
    np.testing.assert_allclose([x[2] for x in a], [x[2] for x in b], atol=1e-6)


def test_cli_help_and_errors(capsys, tmp_path):
    assert main([]) == 2
    assert "kwtl run" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "--shots", "one"])
    assert main(["run", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert main(["run", "--selectors", "best", "--out", str(tmp_path / "o")]) == 2
    assert "unknown selector" in capsys.readouterr().err
    assert main(["run", "--repeats", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is available here")
def test_cli_refuses_cuda_without_cuda(capsys, tmp_path):
    assert main(["run", "--device", "cuda:0", "--out", str(tmp_path / "o")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_run_prints_table(tmp_path, capsys, monkeypatch):
    import kwtl.experiments._profiles as profiles

    monkeypatch.setitem(profiles.PROFILES, "tiny", {**profiles.PROFILES["quick"], **TINY})
    out = tmp_path / "cli"
    code = main(
        [
            "run",
            "--profile",
            "tiny",
            "--target",
            "em",
            "--selectors",
            "random",
            "entropy",
            "--shots",
            "1",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| em" in text and "random" in text and "1-shot" in text
    written = json.loads((out / "results.json").read_text())
    rows = {(r["selector"], r["n_shots"]): r for r in written["summary"]}
    assert set(rows) == {("random", 1), ("entropy", 1)} and written["n_records"] == 2
    for selector in ("random", "entropy"):  # one repeat: the mean is that run's mIoU
        record = json.loads((out / "results" / f"em__{selector}__1shot__r0.json").read_text())
        assert rows[(selector, 1)]["mean"] == pytest.approx(100 * record["miou"])  # in %
        assert f"{100 * record['miou']:.1f} ± 0.0" in text


def test_min_foreground_override_none_is_applied(tmp_path):
    exp = Experiment(
        tmp_path,
        profile="cpu",
        data=None,
        targets=["em"],
        profile_overrides={**TINY, "min_foreground": None},
    )
    assert exp.profile["min_foreground"] is None
    assert (
        Experiment(tmp_path, profile="cpu", targets=["em"], profile_overrides=TINY).profile[
            "min_foreground"
        ]
        == 23
    )
