"""How the drawn-area benchmark's scheduler stores what a job returns
(``benchmarks/_effort_sched.py``): a two-round job that trained its own round 1 also yields
that round-1 run, which is ARM's curve run at B/2, stored once and never overwritten."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _effort_sched import Scheduler  # noqa: E402


def scheduler(tmp_path, records=None):
    """A scheduler with only what ``_record`` uses (no bundle, no workers)."""
    sched = Scheduler.__new__(Scheduler)
    sched.out, sched.jsonl, sched.records, sched.lines = tmp_path, None, dict(records or {}), []
    sched.log = sched.lines.append
    return sched


def two_round(miou1):
    round1 = {"id": "ssTEM__spread_random__B0.5__r1__R__split0__seed3", "miou": miou1}
    return {"id": "ssTEM__round2_entropy__B1__r2-spread_random__R__split0__seed3",
            "miou": 50.0, "round1_miou": miou1, "round1_record": round1}  # fmt: skip


def stored(tmp_path):
    return {p.stem: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")}


def test_a_trained_round_one_is_stored_as_its_own_run(tmp_path):
    sched = scheduler(tmp_path)
    sched._record(two_round(41.5))
    files = stored(tmp_path)
    assert set(files) == {
        "ssTEM__spread_random__B0.5__r1__R__split0__seed3",
        "ssTEM__round2_entropy__B1__r2-spread_random__R__split0__seed3",
    }
    assert files["ssTEM__spread_random__B0.5__r1__R__split0__seed3"]["miou"] == 41.5
    # the round-2 record keeps its round-1 mIoU but not a second copy of the run
    two = files["ssTEM__round2_entropy__B1__r2-spread_random__R__split0__seed3"]
    assert "round1_record" not in two and two["round1_miou"] == 41.5
    assert set(sched.records) == set(files) and sched.lines == []


def test_a_recorded_curve_run_is_kept_and_a_different_result_is_logged(tmp_path):
    known = {"id": "ssTEM__spread_random__B0.5__r1__R__split0__seed3", "miou": 40.0,
             "device": "cuda"}  # fmt: skip
    sched = scheduler(tmp_path, {known["id"]: known})
    sched._record(two_round(40.0))  # the same result: nothing to say
    assert sched.lines == []
    sched._record(two_round(41.5))
    assert sched.records[known["id"]] is known
    assert known["id"] not in stored(tmp_path)  # never rewritten
    assert len(sched.lines) == 1 and "41.5000" in sched.lines[0] and "40.0000" in sched.lines[0]


def test_a_kept_round_one_model_yields_its_run_when_its_job_was_stopped(tmp_path, monkeypatch):
    """A two-round job keeps its round-1 model before it finishes; if it is stopped there,
    the next attempt loads the model and must still yield the round-1 (curve) run."""
    from types import SimpleNamespace

    import _effort_exec as ex
    from kwtl.models import FCRNSegmenter

    seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
                        random_state=0).initialize()  # fmt: skip
    monkeypatch.setattr(ex, "_fine_tune", lambda ctx, job, support: (seg, 7))
    monkeypatch.setattr(ex, "_evaluate", lambda ctx, job, s: (41.5, [41.5], {}))
    ctx = SimpleNamespace(models=tmp_path, keep={"spread_random"}, device="cpu", tf32=False)
    job = {"target": "ssTEM", "arm": "round2_entropy", "budget": 1, "round": 2,
           "round1_arm": "spread_random", "recipe": "R", "split": 0, "seed": 3}  # fmt: skip
    support1, drawn1 = [["img", 0, 0]], {"n_patches": 1}
    _, miou1, how, record1 = ex._round_one(ctx, job, support1, drawn1)  # trains and keeps
    assert (how, miou1) == ("trained", 41.5)
    assert record1["id"] == "ssTEM__spread_random__B0.5__r1__R__split0__seed3"
    # the job stops here; the next attempt finds the kept model
    monkeypatch.setattr(ex, "_fine_tune", lambda *a: (_ for _ in ()).throw(AssertionError))
    _, miou1_again, how, record_again = ex._round_one(ctx, job, support1, drawn1)
    assert (how, miou1_again) == ("kept", 41.5)
    assert record_again == json.loads(json.dumps(record1))
    sched = scheduler(tmp_path)
    sched._record({"id": ex.job_id(job), "miou": 50.0, "round1_record": record_again})
    assert record1["id"] in stored(tmp_path)
