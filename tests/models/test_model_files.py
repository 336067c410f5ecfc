"""Model files that cannot lie: sidecar, checksums, clear refusals, untouched estimator."""

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from kwtl.datasets import make_cells
from kwtl.models import FCRN, FCRNSegmenter, ModelFileError, read_weights, save_weights

AUTHORS_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"


def tiny(**kw):
    params = dict(
        module__width=2,
        module__init="default",
        patch_size=16,
        stride=16,
        max_epochs=1,
        batch_size=8,
        precision="fp32",
        random_state=0,
    )
    params.update(kw)
    return FCRNSegmenter(**params)


@pytest.fixture(scope="module")
def trained():
    images, masks = make_cells(2, 32, random_state=0)
    return tiny().fit(images, masks)


@pytest.fixture
def saved(trained, tmp_path):
    path = tmp_path / "model.pt"
    trained.save_params(f_params=path)
    return path


def _state(seg):
    return {k: v.detach().clone() for k, v in seg.module_.state_dict().items()}


def _snapshot(folder):
    return {
        p.name: "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in Path(folder).iterdir()
    }


def test_sidecar_records_architecture_version_and_checksums(saved, trained):
    meta = json.loads(Path(str(saved) + ".json").read_text())
    assert meta["format"] == "kwtl-weights"
    assert meta["architecture"] == {
        "class": "FCRN",
        "width": 2,
        "affine_batchnorm": False,
        "dropout": 0.0,
        "init": "default",
    }
    assert meta["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert meta["bytes"] == saved.stat().st_size
    assert meta["parameters"]["patch_size"] == 16
    import kwtl

    assert meta["kwtl_version"] == kwtl.__version__
    assert set(meta["tensors"]) == set(trained.module_.state_dict())


def test_round_trip(saved, trained):
    other = tiny(random_state=1).initialize()
    other.load_params(f_params=saved)
    for k, v in trained.module_.state_dict().items():
        assert torch.equal(v, other.module_.state_dict()[k])


def _corrupt(path):
    data = bytearray(path.read_bytes())
    for k in range(200):  # the 200 corrupted bytes, inside the tensor data
        data[len(data) // 2 + k] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path):
    path.write_bytes(b"")


def _text(path):
    path.write_text("these are not weights\n")


def _no_sidecar_truncated(path):
    os.remove(str(path) + ".json")
    _truncate(path)


def _no_sidecar_text(path):
    os.remove(str(path) + ".json")
    _text(path)


def _pickled_code(path):
    os.remove(str(path) + ".json")
    torch.save({"conv1.0.weight": torch.zeros(2, 1, 3, 3), "evil": _Evil()}, path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _wrong_width(path):
    save_weights(FCRN(width=4), path)


def _nan(path):
    module = FCRN(width=2, init="default")
    with torch.no_grad():
        module.conv8.bias.fill_(float("nan"))
    save_weights(module, path)


def _damaged_sidecar(path):
    Path(str(path) + ".json").write_text("{not json")


def _missing(path):
    os.remove(path)


def _folder(path):
    os.remove(path)
    path.mkdir()


DAMAGE = {
    "200 corrupted bytes": (_corrupt, "sha256 checksum mismatch"),
    "truncated": (_truncate, "truncated or was replaced"),
    "empty": (_empty, "empty"),
    "text": (_text, "bytes but its sidecar records"),
    "truncated, no sidecar": (_no_sidecar_truncated, "truncated or damaged"),
    "text, no sidecar": (_no_sidecar_text, "text file, not a PyTorch weights file"),
    "pickled code": (_pickled_code, "never runs code"),
    "wrong width": (_wrong_width, "width 4, the model has width 2"),
    "NaN weights": (_nan, "NaN or infinite"),
    "damaged sidecar": (_damaged_sidecar, "not valid JSON"),
    "missing": (_missing, "no such file"),
    "a folder": (_folder, "is a folder"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("initialized", [True, False], ids=["fitted", "fresh"])
def test_bad_file_is_refused_and_estimator_untouched(
    damage, initialized, saved, trained, tmp_path, capsys
):
    action, match = DAMAGE[damage]
    action(saved)
    before_files = _snapshot(tmp_path)
    seg = tiny(random_state=3)
    if initialized:
        seg.initialize()
        before = _state(seg)
    with pytest.raises(ModelFileError, match=match) as info:
        seg.load_params(f_params=saved)
    assert str(saved) in str(info.value)  # the message names the file
    assert "code ran" not in capsys.readouterr().out
    if initialized:
        after = _state(seg)
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)
    else:
        assert not seg.initialized_
    assert _snapshot(tmp_path) == before_files  # nothing written or changed


def test_plain_state_dict_without_sidecar_loads(trained, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(trained.module_.state_dict(), path)
    seg = tiny(random_state=5).initialize()
    seg.load_params(f_params=path)
    assert torch.equal(seg.module_.conv8.bias, trained.module_.conv8.bias)
    state, meta = read_weights(path)
    assert meta is None and set(state) == set(trained.module_.state_dict())


def test_affine_checkpoint_switches_batchnorm(trained, tmp_path):
    affine = FCRNSegmenter(
        module__width=2, module__affine=True, module__init="default", precision="fp32"
    ).initialize()
    path = tmp_path / "affine.pt"
    affine.save_params(f_params=path)
    seg = tiny().initialize()
    seg.load_params(f_params=path)
    assert any(getattr(m, "affine", False) for m in seg.module_.modules())


@pytest.mark.skipif(
    not (AUTHORS_WEIGHTS / "authors_plft_ssTEM.pth").exists(),
    reason="the authors' weights are not beside the checkout",
)
def test_authors_released_weights_still_load():
    seg = FCRNSegmenter(precision="fp32").initialize()
    seg.load_params(f_params=AUTHORS_WEIGHTS / "authors_plft_ssTEM.pth")
    state = torch.load(
        AUTHORS_WEIGHTS / "authors_plft_ssTEM.pth", map_location="cpu", weights_only=True
    )
    assert torch.equal(seg.module_.conv8.bias, state["conv8.bias"])
    # the plain module loads them as before
    module = FCRN(affine=True)
    module.load_state_dict(state)


def test_save_is_atomic_over_an_old_pair(trained, saved):
    old = saved.read_bytes()
    trained.save_params(f_params=saved)  # same weights again: same bytes, valid pair
    assert read_weights(saved)[1]["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert len(old) == saved.stat().st_size
    assert not [p for p in saved.parent.iterdir() if p.suffix == ".tmp"]


def test_file_object_round_trip(trained, tmp_path):
    path = tmp_path / "f.pt"
    torch.save(trained.module_.state_dict(), path)
    with open(path, "rb") as f:
        seg = tiny(random_state=4).initialize()
        seg.load_params(f_params=f)
    assert torch.equal(seg.module_.conv8.bias, trained.module_.conv8.bias)
    with open(path, "wb"):
        pass
    with open(path, "rb") as f, pytest.raises(ModelFileError, match="empty"):
        tiny().initialize().load_params(f_params=f)


def test_pickle_of_the_estimator_unaffected(trained):
    again = pickle.loads(pickle.dumps(trained))
    np.testing.assert_array_equal(
        again.module_.conv8.bias.detach().numpy(), trained.module_.conv8.bias.detach().numpy()
    )


def _no_sidecar_flipped(path):
    """The issue's case: bytes flipped inside the tensor data, the sidecar not copied along
    (torch.load itself reads such a file without complaint)."""
    os.remove(str(path) + ".json")
    _corrupt(path)


def test_flipped_bytes_without_sidecar_load_silently_in_torch(saved):
    """The premise of the zip check: torch alone does not notice the damage."""
    _no_sidecar_flipped(saved)
    state = torch.load(saved, map_location="cpu", weights_only=True)
    assert "conv1.0.weight" in state


@pytest.mark.parametrize("initialized", [True, False], ids=["fitted", "fresh"])
def test_flipped_bytes_without_sidecar_are_refused(initialized, saved, tmp_path):
    _no_sidecar_flipped(saved)
    before_files = _snapshot(tmp_path)
    seg = tiny(random_state=3)
    if initialized:
        seg.initialize()
        before = _state(seg)
    with pytest.raises(ModelFileError, match="CRC-32") as info:
        seg.load_params(f_params=saved)
    assert str(saved) in str(info.value)
    if initialized:
        assert all(torch.equal(before[k], v) for k, v in _state(seg).items())
    else:
        assert not seg.initialized_
    assert _snapshot(tmp_path) == before_files


def test_flipped_bytes_in_a_file_object_are_refused(saved):
    _no_sidecar_flipped(saved)
    with open(saved, "rb") as f, pytest.raises(ModelFileError, match="CRC-32"):
        read_weights(f)


def test_flipped_bytes_without_sidecar_refused_by_the_workflow(saved):
    from kwtl.workflow import load_model

    _no_sidecar_flipped(saved)
    with pytest.raises(ModelFileError, match="CRC-32"):
        load_model(saved)
