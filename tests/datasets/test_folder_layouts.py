"""``load_folder`` finding the layout by itself (images/ + masks/ or Cellpose pairs), instance
masks kept apart, and ``load_images`` on unlabelled folders with stacks."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from kwtl.datasets import load_folder, load_images


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _touching_squares():
    labels = np.zeros((6, 8), np.uint16)
    labels[1:5, 1:4] = 1
    labels[1:5, 4:7] = 2
    return labels


# ------------------------------------------------------------------------------ load_folder
def test_cellpose_pairs_in_one_folder_found_automatically(tmp_path):
    for name, value in (("b", 20), ("a", 10)):
        tifffile.imwrite(tmp_path / f"{name}.tif", np.full((6, 8), value, np.uint8))
        tifffile.imwrite(tmp_path / f"{name}_masks.tif", _touching_squares())
    data = load_folder(tmp_path)
    assert data.names == ["a", "b"]  # the *_masks files are never images
    assert [int(im[0, 0]) for im in data.images] == [10, 20]
    expected = np.zeros((6, 8), bool)  # the two touching cells stay apart
    expected[1:5, 1:3] = expected[1:5, 5:7] = True
    np.testing.assert_array_equal(data.masks[0], expected)


def test_cellpose_pairs_inside_images_folder(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "images" / "a_masks.png", np.eye(4, dtype=np.uint8))
    data = load_folder(tmp_path)
    assert data.names == ["a"] and int(data.masks[0].sum()) == 4


def test_separate_folders_still_default(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "masks" / "a.png", np.eye(4, dtype=np.uint8) * 255)
    assert load_folder(tmp_path).masks[0].sum() == 4


def test_images_at_top_with_masks_folder(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "masks" / "a.png", np.eye(4, dtype=np.uint8))
    assert load_folder(tmp_path).names == ["a"]


def test_explicit_suffix_still_works(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "a_mask.png", np.eye(4, dtype=np.uint8))
    data = load_folder(tmp_path, mask_suffix="_mask")
    assert data.names == ["a"]
    data = load_folder(tmp_path, images_dir=None, masks_dir=".", mask_suffix="_mask")
    assert data.names == ["a"]


def test_unpaired_file_is_named(tmp_path):
    for name in ("a", "b", "c"):
        _png(tmp_path / f"{name}.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "a_masks.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "c_masks.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "z_masks.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(
        ValueError,
        match=r"1 image\(s\).*no mask.*_masks.*b\.png"
        r".*1 mask\(s\).*no image.*z_masks\.png",
    ):
        load_folder(tmp_path)


def test_folder_without_any_mask_says_so(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"no masks/ folder.*no \*_masks files.*load_images"):
        load_folder(tmp_path)


def test_folder_with_other_mask_suffix_gets_a_hint(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "a_mask.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"mask_suffix='_mask'"):
        load_folder(tmp_path)


def test_cellpose_npy_gets_a_hint(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "a_seg.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(ValueError, match=r"_seg\.npy files are not read"):
        load_folder(tmp_path)


def test_load_folder_channel(tmp_path):
    data = np.stack([np.full((6, 6), 10, np.uint8), np.full((6, 6), 90, np.uint8)])
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="minisblack", metadata={"axes": "CYX"})
    _png(tmp_path / "a_masks.png", np.eye(6, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"a\.tif has 2 channels"):
        load_folder(tmp_path)
    assert int(load_folder(tmp_path, channel=1).images[0][0, 0]) == 90


def test_jpeg_images_with_png_masks(tmp_path):
    _png(tmp_path / "images" / "a.jpg", np.full((8, 8), 100, np.uint8))
    _png(tmp_path / "masks" / "a.png", np.eye(8, dtype=np.uint8))
    data = load_folder(tmp_path)
    assert data.names == ["a"] and abs(int(data.images[0].mean()) - 100) <= 2


# ------------------------------------------------------------------------------ load_images
def test_load_images_stacks_masks_and_order(tmp_path):
    _png(tmp_path / "b.png", np.full((8, 8), 5, np.uint8))
    _png(tmp_path / "b_masks.png", np.ones((8, 8), np.uint8))  # skipped
    tifffile.imwrite(
        tmp_path / "a.tif",
        np.stack([np.full((8, 8), v, np.uint8) for v in (1, 2, 3)]),
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 2] = 77
    _png(tmp_path / "c.png", rgb)
    (tmp_path / "notes.txt").write_text("x")
    images, names = load_images(tmp_path)
    assert names == ["a_z000", "a_z001", "a_z002", "b", "c"]
    assert [int(im[0, 0]) for im in images[:4]] == [1, 2, 3, 5]
    images, names = load_images(tmp_path, channel=0)  # grey files have a channel 0
    assert [int(im[0, 0]) for im in images] == [1, 2, 3, 5, 0]
    with pytest.raises(ValueError, match=r"a\.tif has a single channel"):
        load_images(tmp_path, channel=2)


def test_load_images_recursive(tmp_path):
    _png(tmp_path / "top.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "day1" / "x.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / ".hidden" / "y.png", np.zeros((4, 4), np.uint8))
    assert load_images(tmp_path)[1] == ["top"]
    assert load_images(tmp_path, recursive=True)[1] == ["day1/x", "top"]


def test_load_images_empty_folder(tmp_path):
    (tmp_path / "a_masks.png").write_bytes(b"")  # masks only: still no image
    with pytest.raises(ValueError, match="no images"):
        load_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_images(tmp_path / "nowhere")


def test_load_images_unreadable_file_is_named(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    with pytest.raises(ValueError, match=r"broken\.tif"):
        load_images(tmp_path)


def test_load_images_ambiguous_file_is_named(tmp_path):
    tifffile.imwrite(
        tmp_path / "q.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack"
    )  # unnamed axis of 3: channels or planes?
    with pytest.raises(ValueError, match=r"q\.tif.*channels or a Z/T stack"):
        load_images(tmp_path)
    images, names = load_images(tmp_path, channel=1)
    assert names == ["q"] and len(images) == 1


def test_load_images_unnamed_frames_of_rgb_are_a_stack(tmp_path):
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[1] = 255
    tifffile.imwrite(tmp_path / "rgb.tif", frames, photometric="rgb")  # axes 'QYXS'
    images, names = load_images(tmp_path)
    assert names == ["rgb_z000", "rgb_z001"]
    assert [int(im[0, 0]) for im in images] == [0, 255]
