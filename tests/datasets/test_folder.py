import io
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image

from kwtl.datasets import (
    BENCHMARK_FOLDERS,
    load_benchmark,
    load_folder,
    read_image,
    read_mask,
)
from kwtl.datasets._download import _install_sstem_zip


def _save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _palette_image(indices, palette):
    image = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    image.putpalette(palette)
    return image


def _make_folder(root, names, shape=(6, 8), image_ext=".png", mask_ext=".png"):
    rng = np.random.default_rng(0)
    for name in names:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = (rng.random(shape) > 0.5).astype(np.uint8) * 255
        for sub, array, ext in (("images", image, image_ext), ("masks", mask, mask_ext)):
            path = root / sub / f"{name}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if ext == ".png":
                Image.fromarray(array).save(path)
            else:
                tifffile.imwrite(path, array)
    return root


# ------------------------------------------------------------------------------ single files
def test_read_grey_png_8bit(tmp_path):
    image = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = read_image(_save_png(tmp_path / "a.png", image))
    assert out.dtype == np.uint8 and out.shape == (6, 8)
    np.testing.assert_array_equal(out, image)


def test_read_16bit_tiff_is_percentile_normalised(tmp_path):
    image = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = read_image(tmp_path / "a.tif")
    # 1st percentile 30, 99.8th 3988 (linear interpolation of the sorted 4 values):
    # 1000 -> 970 * 255 / 3958 = 62.5 -> 62; 2000 -> 126.9 -> 127; 4000 clipped to 255
    np.testing.assert_array_equal(out, [[0, 62], [127, 255]])


def test_read_16bit_tiff_below_255_is_kept(tmp_path):
    image = np.array([[0, 10], [200, 255]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tiff", image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tiff"), image)


def test_read_16bit_png_is_percentile_normalised_not_clipped_at_255(tmp_path):
    image = np.array([[0, 30000], [60000, 15000]], dtype=np.uint16)
    Image.fromarray(image).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    # percentiles 450 and 59820: 30000 -> 29550 * 255 / 59370 = 126.9 -> 127
    np.testing.assert_array_equal(out, [[0, 127], [255, 62]])


def test_read_rgb_png_uses_luma(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1] = (10, 20, 30)
    out = read_image(_save_png(tmp_path / "a.png", rgb))
    expected = np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_read_rgba_png_ignores_alpha(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = [[0, 255], [128, 7]]
    out = read_image(_save_png(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(out, np.full((2, 2), 100, np.uint8))


def test_read_rgb_tiff_uses_luma(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), np.full((2, 2), 117))


def test_read_grey_alpha_png(tmp_path):
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[..., 0] = [[1, 2], [3, 4]]
    la[..., 1] = 255
    out = read_image(_save_png(tmp_path / "a.png", la))
    with Image.open(tmp_path / "a.png") as saved:
        assert saved.mode == "LA"
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


def test_read_palette_png_mask(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    _palette_image(indices, [0, 0, 0, 255, 255, 255, 128, 0, 0]).save(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as saved:
        assert saved.mode == "P"
    # colour-coded labels: black 0, then by packed colour: red (0xFF0000) 1, white 2
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[0, 2, 1], [1, 2, 0]])
    # as an image the palette colours are looked up, then converted to luma
    np.testing.assert_array_equal(read_image(tmp_path / "m.png")[0], [0, 255, 38])


def test_read_palette_mask_with_non_black_index_zero(tmp_path):
    # index 0 is white here: foreground is what is drawn non-black, not index != 0
    indices = np.array([[0, 1]], dtype=np.uint8)
    _palette_image(indices, [255, 255, 255, 0, 0, 0]).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[1, 0]])


def test_read_1bit_png_and_tiff_masks(tmp_path):
    mask = np.array([[True, False, True], [False, False, True]])
    Image.fromarray(mask).save(tmp_path / "m.png")
    tifffile.imwrite(tmp_path / "m.tif", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), mask)
    np.testing.assert_array_equal(read_image(tmp_path / "m.png"), mask * np.uint8(255))


def test_read_tiff_mask_labels(tmp_path):
    labels = np.array([[0, 3], [700, 0]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "m.tif", labels)
    out = read_mask(tmp_path / "m.tif")
    assert out.dtype == np.uint16  # instance labels are kept, not binarised on read
    np.testing.assert_array_equal(out, labels)


def test_read_tiff_stack_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((5, 4, 4), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match="s.tif"):
        read_image(tmp_path / "s.tif")


def test_read_single_page_stack_is_squeezed(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.ones((1, 4, 5), np.uint8), photometric="minisblack")
    assert read_image(tmp_path / "s.tif").shape == (4, 5)


@pytest.mark.parametrize("name", ["bad.png", "bad.tif"])
def test_read_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=name):
        read_image(tmp_path / name)


def test_read_truncated_png(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        buffer, format="PNG"
    )
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(ValueError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_read_unsupported_extension(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="a.jpg"):
        read_image(tmp_path / "a.jpg")


# ------------------------------------------------------------------------------ folders
def test_load_folder_sorted_and_typed(tmp_path):
    _make_folder(tmp_path, ["c", "a", "b10", "b2"])
    data = load_folder(tmp_path)
    assert data.names == ["a", "b10", "b2", "c"]  # lexicographic, like the authors' lists
    assert data.path == str(tmp_path)
    assert len(data.images) == len(data.masks) == 4
    for image, mask in zip(data.images, data.masks):
        assert image.dtype == np.uint8 and image.shape == (6, 8)
        assert mask.dtype == bool and mask.shape == (6, 8)
    reference = read_image(tmp_path / "images" / "b2.png")
    np.testing.assert_array_equal(data.images[2], reference)


def test_load_folder_pairs_by_stem_across_formats(tmp_path):
    _make_folder(tmp_path, ["x", "y"], image_ext=".tif", mask_ext=".png")
    data = load_folder(tmp_path)
    assert data.names == ["x", "y"]
    np.testing.assert_array_equal(data.masks[1], read_mask(tmp_path / "masks" / "y.png") != 0)


def test_load_folder_ignores_other_files(tmp_path):
    _make_folder(tmp_path, ["a"])
    (tmp_path / "images" / "notes.txt").write_text("x")
    (tmp_path / "images" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "masks" / "Thumbs.db").write_bytes(b"junk")
    assert load_folder(tmp_path).names == ["a"]


def test_load_folder_upper_case_extension(tmp_path):
    _make_folder(tmp_path, ["a"])
    (tmp_path / "images" / "a.png").rename(tmp_path / "images" / "a.PNG")
    assert load_folder(tmp_path).names == ["a"]


def test_load_folder_image_without_mask(tmp_path):
    _make_folder(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(ValueError, match=r"have no mask.*b\.png"):
        load_folder(tmp_path)


def test_load_folder_mask_without_image(tmp_path):
    _make_folder(tmp_path, ["a"])
    _save_png(tmp_path / "masks" / "orphan.png", np.zeros((6, 8), np.uint8))
    with pytest.raises(ValueError, match=r"have no image.*orphan\.png"):
        load_folder(tmp_path)


def test_load_folder_duplicate_stem(tmp_path):
    _make_folder(tmp_path, ["a"])
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((6, 8), np.uint8))
    with pytest.raises(ValueError, match="stem 'a'"):
        load_folder(tmp_path)


def test_load_folder_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_folder(tmp_path / "nowhere")


def test_load_folder_missing_masks_folder(tmp_path):
    _make_folder(tmp_path, ["a"])
    with pytest.raises(FileNotFoundError, match="labels"):
        load_folder(tmp_path, masks_dir="labels")


def test_load_folder_empty(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_folder(tmp_path)


def test_load_folder_corrupt_file(tmp_path):
    _make_folder(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="b.png"):
        load_folder(tmp_path)


def test_load_folder_shape_mismatch(tmp_path):
    _make_folder(tmp_path, ["a", "b"])
    _save_png(tmp_path / "masks" / "b.png", np.zeros((8, 6), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png.*\(8, 6\).*\(6, 8\)"):
        load_folder(tmp_path)


def test_load_folder_images_only(tmp_path):
    _make_folder(tmp_path, ["b", "a"])
    (tmp_path / "masks" / "a.png").unlink()  # unpaired masks do not matter without masks
    data = load_folder(tmp_path, masks_dir=None)
    assert data.masks is None
    assert data.names == ["a", "b"]
    # images directly in the folder
    flat = load_folder(tmp_path / "images", images_dir=None, masks_dir=None)
    assert flat.names == ["a", "b"]
    np.testing.assert_array_equal(flat.images[1], data.images[1])


# ------------------------------------------------------------------------------ benchmarks
def _make_benchmark(root):
    _make_folder(root / "ssTEM", ["01", "00"], shape=(8, 8))
    _make_folder(root / "B39_sub_DSB2018_U2OS", ["z", "y", "x"], shape=(5, 7))
    return root


def test_load_benchmark_present_folders(tmp_path):
    data = load_benchmark(_make_benchmark(tmp_path))
    assert data.datasets == ["ssTEM", "B39"]
    assert list(data.dataset) == ["ssTEM"] * 2 + ["B39"] * 3
    assert isinstance(data.dataset, np.ndarray)
    assert data.names == ["00", "01", "x", "y", "z"]
    assert len(data.images) == len(data.masks) == 5


def test_load_benchmark_names_order_and_aliases(tmp_path):
    root = _make_benchmark(tmp_path)
    data = load_benchmark(root, names=["b39", "ssTEM"])
    assert data.datasets == ["B39", "ssTEM"]
    assert load_benchmark(root, names="B39_sub_DSB2018_U2OS").datasets == ["B39"]


def test_load_benchmark_any_folder(tmp_path):
    root = _make_benchmark(tmp_path)
    _make_folder(root / "my_lab", ["q"])
    data = load_benchmark(root, names=["my_lab"])
    assert data.datasets == ["my_lab"] and list(data.dataset) == ["my_lab"]


def test_load_benchmark_requested_missing(tmp_path):
    root = _make_benchmark(tmp_path)
    with pytest.raises(FileNotFoundError, match="TNBC_sub_NuInsSeg"):
        load_benchmark(root, names=["TNBC"])
    with pytest.raises(ValueError, match="unknown dataset"):
        load_benchmark(root, names=["nothing"])
    with pytest.raises(ValueError, match="more than once"):
        load_benchmark(root, names=["B39", "b39"])


def test_load_benchmark_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_benchmark(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no dataset folder"):
        load_benchmark(tmp_path)


# ------------------------------------------------------------------------------ download
def _fake_sstem_zip(path, n=3, shape=(6, 5)):
    rng = np.random.default_rng(0)
    expected = {}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("groundtruth-drosophila-vnc-master/README.md", "readme")
        for i in range(n):
            raw = rng.integers(0, 256, shape, dtype=np.uint8)
            mito = rng.choice(np.array([0, 100, 200, 255], np.uint8), size=shape)
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, raw)
            archive.writestr(
                f"groundtruth-drosophila-vnc-master/stack1/raw/{i:02d}.tif", buffer.getvalue()
            )
            buffer = io.BytesIO()
            if i == 0:  # the original masks mix 1-bit and 8-bit files
                mito = (mito > 127).astype(np.uint8) * 255
                Image.fromarray(mito > 127).save(buffer, format="PNG")
            else:
                Image.fromarray(mito).save(buffer, format="PNG")
            archive.writestr(
                f"groundtruth-drosophila-vnc-master/stack1/mitochondria/{i:02d}.png",
                buffer.getvalue(),
            )
            archive.writestr(
                f"groundtruth-drosophila-vnc-master/stack1/membranes/{i:02d}.png", buffer.getvalue()
            )
            expected[f"{i:02d}"] = (raw, mito > 127)
    return expected


def test_install_sstem_zip(tmp_path):
    expected = _fake_sstem_zip(tmp_path / "master.zip")
    target = _install_sstem_zip(tmp_path / "master.zip", tmp_path / "data")
    assert target == tmp_path / "data" / "ssTEM"
    assert sorted(p.name for p in (target / "masks").iterdir()) == ["00.png", "01.png", "02.png"]
    # nothing but the dataset is left behind
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["ssTEM"]
    with Image.open(target / "masks" / "01.png") as saved:
        mask_values = np.unique(np.asarray(saved))
    assert set(mask_values) <= {0, 255}

    data = load_benchmark(tmp_path / "data", names=["ssTEM"])
    assert data.names == ["00", "01", "02"]
    for image, mask, name in zip(data.images, data.masks, data.names):
        np.testing.assert_array_equal(image, expected[name][0])
        np.testing.assert_array_equal(mask, expected[name][1])

    with pytest.raises(FileExistsError):
        _install_sstem_zip(tmp_path / "master.zip", tmp_path / "data")
    _install_sstem_zip(tmp_path / "master.zip", tmp_path / "data", overwrite=True)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["ssTEM"]


def test_install_sstem_zip_rejects_other_archives(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("something/else.txt", "x")
    with pytest.raises(ValueError, match="stack1/raw"):
        _install_sstem_zip(tmp_path / "other.zip", tmp_path / "data")
    assert not (tmp_path / "data" / "ssTEM").exists()
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.zip"):
        _install_sstem_zip(tmp_path / "broken.zip", tmp_path / "data")


def test_install_sstem_zip_failure_leaves_nothing(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("x/stack1/raw/00.tif", b"not a tiff")
        archive.writestr("x/stack1/mitochondria/00.png", b"not a png")
    with pytest.raises(Exception):
        _install_sstem_zip(tmp_path / "bad.zip", tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


# ------------------------------------------------------------------------------ real data
@pytest.mark.integration
def test_load_real_sstem(shared_data):
    data = load_benchmark(shared_data, names=["ssTEM"])
    assert data.datasets == ["ssTEM"]
    assert data.names == [f"{i:02d}" for i in range(20)]
    assert len(data.images) == 20
    for image, mask in zip(data.images, data.masks):
        assert image.shape == mask.shape == (1024, 1024)
        assert image.dtype == np.uint8 and mask.dtype == bool
    foreground = np.mean([mask.mean() for mask in data.masks])
    assert 0.04 < foreground < 0.07


@pytest.mark.integration
def test_load_real_benchmark(shared_data):
    data = load_benchmark(shared_data)
    assert data.datasets == list(BENCHMARK_FOLDERS)
    counts = {name: int(np.sum(data.dataset == name)) for name in data.datasets}
    assert counts == {"ssTEM": 20, "EM": 165, "B39": 90, "B5": 90, "TNBC": 25}
    shapes = {
        name: data.images[int(np.flatnonzero(data.dataset == name)[0])].shape
        for name in data.datasets
    }
    assert shapes == {
        "ssTEM": (1024, 1024),
        "EM": (768, 1024),
        "B39": (520, 696),
        "B5": (360, 360),
        "TNBC": (512, 512),
    }
    assert len(data.images) == len(data.masks) == len(data.names) == 390
    assert all(image.ndim == 2 and image.dtype == np.uint8 for image in data.images)
