"""The authors' weights loader (local files only, never downloads) and encoder features."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_segmenter

from kwtl.datasets import PatchSet
from kwtl.models import (
    AUTHORS_COMMIT,
    PRETRAINED,
    _pretrained,
    load_pretrained,
    pretrained_path,
)
from kwtl.models._features import encoder_features, image_encoder_maps, window_means

WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"
needs_weights = pytest.mark.skipif(
    not (WEIGHTS / "authors_plft_EM.pth").exists(),
    reason="the authors' weights are not available here",
)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    import pooch

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(pooch, "retrieve", refuse)
    monkeypatch.delenv("KWTL_WEIGHTS", raising=False)


def test_registry_pins_the_commit():
    assert AUTHORS_COMMIT == "509f5328728cc8f8bf3f8ab5fb7177da78c7f208"
    assert _pretrained._BASE_URL.endswith(f"/raw/{AUTHORS_COMMIT}/")
    assert all(len(sha) == 64 for _, _, sha, _ in PRETRAINED.values())


@needs_weights
@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_local_files_match_recorded_sha256(name):
    path = pretrained_path(name, source=WEIGHTS)
    assert path.name == PRETRAINED[name][0]


@needs_weights
def test_load_pretrained_from_folder_and_file():
    seg = load_pretrained("authors:EM", source=WEIGHTS, precision="fp32", patch_size=64)
    state = torch.load(WEIGHTS / "authors_plft_EM.pth", map_location="cpu", weights_only=True)
    mine = seg.module_.state_dict()
    assert set(state) <= set(mine)
    for k, v in state.items():
        torch.testing.assert_close(mine[k], v)
    assert seg.module_.conv1[1].affine and seg.patch_size == 64
    again = load_pretrained("authors:EM", source=WEIGHTS / "authors_plft_EM.pth", precision="fp32")
    torch.testing.assert_close(again.module_.conv8.bias, seg.module_.conv8.bias)
    meta = load_pretrained("authors:meta-TNBC", source=WEIGHTS, precision="fp32")
    assert not meta.module_.conv1[1].affine


def test_checksum_mismatch_and_missing_file(tmp_path):
    bad = tmp_path / "authors_plft_EM.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        pretrained_path("authors:EM", source=tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        pretrained_path("authors:ssTEM", source=tmp_path)
    with pytest.raises(ValueError, match="unknown pretrained"):
        pretrained_path("authors:nope")


def test_download_is_pinned_and_checked(tmp_path, monkeypatch):
    calls = {}

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.update(url=url, known_hash=known_hash, fname=fname)
        return str(tmp_path / fname)

    import pooch

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    out = pretrained_path("authors:ssTEM", download=True, cache_dir=tmp_path)
    assert calls["url"] == (
        f"https://github.com/Yussef93/KnowWhatToLabel/raw/{AUTHORS_COMMIT}/"
        "models/PLFT/model_pretrained_MetaBCE_100epochs_PL_target_ssTEM.pth"
    )
    assert calls["known_hash"] == "sha256:" + PRETRAINED["authors:ssTEM"][2]
    assert out == tmp_path / "authors_plft_ssTEM.pth"


# ----------------------------------------------------------------- features
@pytest.fixture(scope="module")
def seg():
    return tiny_segmenter(random_state=0).initialize()


def test_encoder_features_match_manual_forward(seg):
    patches = np.random.default_rng(0).integers(0, 256, (5, 16, 24), dtype=np.uint8)
    got = seg.encoder_features(patches)
    net = seg.module_.eval()
    x = torch.from_numpy(patches).float().div(255).sub(0.5).div(0.5)[:, None]
    with torch.no_grad():
        h = net.conv4(net.conv3(net.conv2(net.conv1(x))))
    seg.module_.train()
    # two float32 computations (normalisation written differently, other conv kernels):
    # they agree to float32 accumulation error, ~1e-5 relative on some CPUs
    np.testing.assert_allclose(got, h.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    assert got.shape == (5, 64)
    np.testing.assert_allclose(
        got, encoder_features(seg, patches, batch_size=2), rtol=1e-5, atol=1e-7
    )  # other batch sizes may pick other conv kernels: float32 rounding differs slightly


def test_window_means_against_loops():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 6, 8))
    got = window_means(maps, patch_size=(16, 24), stride=8, scale=4)
    coords = PatchSet.from_images([np.zeros((24, 32), np.uint8)], (16, 24), 8).coords
    expect = np.array(
        [
            maps[:, r // 4 : (r + 16) // 4, c // 4 : (c + 24) // 4].mean(axis=(1, 2))
            for _, r, c in coords
        ]
    )
    np.testing.assert_allclose(got, expect)
    np.testing.assert_allclose(
        window_means(maps[0], 8, 4, scale=4),
        [maps[0, r : r + 2, c : c + 2].mean() for r in range(0, 5, 1) for c in range(0, 7, 1)],
    )
    with pytest.raises(ValueError, match="divisible"):
        window_means(maps, patch_size=6, stride=4, scale=4)


def test_image_encoder_maps_pool_to_patch_features_away_from_borders(seg):
    image = np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)
    maps = image_encoder_maps(seg, image)
    assert maps.shape == (64, 4, 4)
    pooled = window_means(maps, 32, 32, scale=8)
    np.testing.assert_allclose(pooled, seg.encoder_features(image[None]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 8"):
        image_encoder_maps(seg, image[:30])
