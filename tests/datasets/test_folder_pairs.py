"""Cellpose-style pairs in one folder, and ``load_benchmark`` reading every dataset folder."""

import numpy as np
import pytest
from PIL import Image

from kwtl.datasets import load_benchmark, load_folder


def _png(path, array):
    Image.fromarray(array).save(path)


def test_masks_in_the_images_folder_pair_by_suffix(tmp_path):
    for name, value in (("a", 10), ("b", 20)):
        _png(tmp_path / f"{name}.png", np.full((4, 6), value, np.uint8))
        mask = np.zeros((4, 6), np.uint8)
        mask[0, : value // 10] = 255
        _png(tmp_path / f"{name}_masks.png", mask)
    data = load_folder(tmp_path, images_dir=None, masks_dir=".")
    assert data.names == ["a", "b"]  # the *_masks files are never images
    assert [int(im[0, 0]) for im in data.images] == [10, 20]
    assert [int(m.sum()) for m in data.masks] == [1, 2]  # each image got its own mask


def test_same_folder_without_suffix_is_refused(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="mask_suffix"):
        load_folder(tmp_path, images_dir=None, masks_dir=".", mask_suffix="")


def test_image_without_its_masks_file_is_named(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 6), np.uint8))
    _png(tmp_path / "b.png", np.zeros((4, 6), np.uint8))
    _png(tmp_path / "a_masks.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="b.png"):
        load_folder(tmp_path, images_dir=None, masks_dir=".")


def test_separate_folders_with_a_suffix(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _png(tmp_path / "images" / "a.png", np.zeros((4, 6), np.uint8))
    _png(tmp_path / "masks" / "a_masks.png", np.full((4, 6), 255, np.uint8))
    data = load_folder(tmp_path, mask_suffix="_masks")
    assert data.names == ["a"] and data.masks[0].all()


def _dataset(root, name, n=2):
    for sub in ("images", "masks"):
        (root / name / sub).mkdir(parents=True)
    for k in range(n):
        _png(root / name / "images" / f"{k}.png", np.zeros((4, 4), np.uint8))
        _png(root / name / "masks" / f"{k}.png", np.zeros((4, 4), np.uint8))


def test_load_benchmark_reads_every_dataset_folder(tmp_path):
    _dataset(tmp_path, "my_lab")
    _dataset(tmp_path, "EM")
    _dataset(tmp_path, "another", n=1)
    (tmp_path / "notes").mkdir()  # not a dataset: no images/ and masks/
    (tmp_path / ".hidden").mkdir()
    data = load_benchmark(tmp_path)
    assert data.datasets == ["EM", "another", "my_lab"]  # benchmarks first, then by name
    assert list(data.dataset).count("another") == 1
