"""Reading and writing the field's file formats: TIFF (8/16-bit, float, stacks, channels),
PNG (grey, RGB, 16-bit), JPEG; masks kept as labels; atomic, non-overwriting writers."""

import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from kwtl.datasets import read_image, read_mask, read_stack, write_image, write_mask


# ------------------------------------------------------------------------------ read_image
def test_16bit_tiff_below_and_above_255(tmp_path):
    low = np.array([[0, 17], [200, 255]], np.uint16)
    tifffile.imwrite(tmp_path / "low.tif", low)
    np.testing.assert_array_equal(read_image(tmp_path / "low.tif"), low)  # 8-bit data kept
    high = np.zeros((10, 10), np.uint16)
    high[5:] = 4000
    tifffile.imwrite(tmp_path / "high.tif", high)
    out = read_image(tmp_path / "high.tif")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, (high > 0) * 255)  # two levels: percentiles 0 and 4000


def test_float_tiff_in_unit_range_is_scaled(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.array([[0.0, 0.5], [1.0, 0.25]], np.float32))
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), [[0, 128], [255, 64]])


def test_rgb_png_luma_and_channel(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    # 0.299 * 100 + 0.587 * 50 + 0.114 * 200 = 82.15
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), np.full((3, 4), 82))
    for k, value in enumerate((100, 50, 200)):
        np.testing.assert_array_equal(read_image(tmp_path / "c.png", channel=k), value)
    with pytest.raises(ValueError, match=r"3 channels.*channel=3"):
        read_image(tmp_path / "c.png", channel=3)


def test_jpeg_grey_and_rgb(tmp_path):
    grey = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=100)
    out = read_image(tmp_path / "g.jpg")
    assert out.shape == (8, 8) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - grey).max() <= 3  # lossy, but close
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "c.JPEG", quality=100)
    green = read_image(tmp_path / "c.JPEG", channel=1)
    assert abs(int(green.mean()) - 200) <= 3


def _two_channel(tmp_path, **kwargs):
    data = np.stack([np.full((8, 9), 10, np.uint16), np.full((8, 9), 5000, np.uint16)])
    data[1, :4] = 1000
    tifffile.imwrite(tmp_path / "two.tif", data, photometric="minisblack", **kwargs)
    return data


def test_channel_first_tiff_with_axes_metadata(tmp_path):
    data = _two_channel(tmp_path, metadata={"axes": "CYX"})
    with pytest.raises(ValueError, match=r"two\.tif has 2 channels.*channel=0\.\.1"):
        read_image(tmp_path / "two.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "two.tif", channel=0), 10)
    np.testing.assert_array_equal(
        read_image(tmp_path / "two.tif", channel=1), (data[1] == 5000) * 255
    )


def test_channel_first_imagej_hyperstack(tmp_path):
    _two_channel(tmp_path, imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "two.tif", channel=0), 10)


def test_unnamed_two_planes_are_ambiguous(tmp_path):
    _two_channel(tmp_path)  # tifffile writes axes 'QYX': channels or a stack?
    with pytest.raises(ValueError, match=r"two\.tif.*channels or a Z/T stack.*read_stack"):
        read_image(tmp_path / "two.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "two.tif", channel=0), 10)
    assert len(read_stack(tmp_path / "two.tif")) == 2  # read_stack takes them as planes


def test_channels_last_tiff_without_metadata(tmp_path):
    data = np.zeros((6, 7, 2), np.uint8)
    data[..., 1] = 99
    tifffile.imwrite(
        tmp_path / "hw2.tif", data, photometric="minisblack", planarconfig="contig", metadata=None
    )
    np.testing.assert_array_equal(read_image(tmp_path / "hw2.tif", channel=1), 99)
    with pytest.raises(ValueError, match="2 channels"):
        read_image(tmp_path / "hw2.tif")


def test_channel_on_a_grey_file(tmp_path):
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", channel=0), 7)
    with pytest.raises(ValueError, match="single channel"):
        read_image(tmp_path / "g.png", channel=1)
    with pytest.raises(ValueError, match="channel must be"):
        read_image(tmp_path / "g.png", channel=-1)


def test_stack_given_to_read_image_points_to_read_stack(tmp_path):
    tifffile.imwrite(
        tmp_path / "z.tif",
        np.zeros((3, 8, 8), np.uint8),
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    with pytest.raises(ValueError, match=r"z\.tif is a stack of 3 planes.*read_stack"):
        read_image(tmp_path / "z.tif")
    with pytest.raises(ValueError, match="read_stack"):
        read_image(tmp_path / "z.tif", channel=0)  # a Z axis is never a channel


# ------------------------------------------------------------------------------ read_stack
def test_read_stack_three_planes(tmp_path):
    stack = np.stack([np.full((5, 6), v, np.uint8) for v in (1, 2, 3)])
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack", metadata={"axes": "ZYX"})
    planes = read_stack(tmp_path / "z.tif")
    assert [p.shape for p in planes] == [(5, 6)] * 3
    assert [int(p[0, 0]) for p in planes] == [1, 2, 3]


def test_read_stack_of_pages_without_metadata(tmp_path):
    stack = np.arange(7)[:, None, None] * np.ones((7, 4, 5), np.uint8)
    tifffile.imwrite(tmp_path / "pages.tif", stack, photometric="minisblack", metadata=None)
    assert [int(p[0, 0]) for p in read_stack(tmp_path / "pages.tif")] == list(range(7))
    with pytest.raises(ValueError, match="stack of 7 planes"):
        read_image(tmp_path / "pages.tif")


def test_read_stack_hyperstack_needs_a_channel(tmp_path):
    data = np.zeros((3, 2, 6, 6), np.uint8)  # Z, C, Y, X
    data[:, 1] = np.arange(3)[:, None, None] + 40
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(ValueError, match="2 channels"):
        read_stack(tmp_path / "h.tif")
    planes = read_stack(tmp_path / "h.tif", channel=1)
    assert [int(p[0, 0]) for p in planes] == [40, 41, 42]
    with pytest.raises(ValueError, match="read_stack"):
        read_image(tmp_path / "h.tif", channel=1)


def test_read_stack_16bit_planes_are_normalised_each(tmp_path):
    stack = np.zeros((2, 10, 10), np.uint16)
    stack[0, 5:] = 1000
    stack[1, 5:] = 60000
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack", metadata={"axes": "TYX"})
    a, b = read_stack(tmp_path / "s.tif")
    np.testing.assert_array_equal(a, b)  # each plane by its own percentiles
    assert a.max() == 255 and a.min() == 0


def test_read_stack_of_a_single_image(tmp_path):
    Image.fromarray(np.full((4, 4), 9, np.uint8)).save(tmp_path / "one.png")
    (plane,) = read_stack(tmp_path / "one.png")
    np.testing.assert_array_equal(plane, 9)


# ------------------------------------------------------------------------------ read_mask
def test_read_mask_keeps_instance_labels(tmp_path):
    labels = np.array([[0, 1, 1], [0, 2, 300]], np.uint16)
    Image.fromarray(labels).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(out, labels)
    assert np.issubdtype(out.dtype, np.integer)


def test_read_mask_float_tiff_of_whole_numbers(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.array([[0.0, 3.0], [2.0, 0.0]], np.float32))
    out = read_mask(tmp_path / "m.tif")
    np.testing.assert_array_equal(out, [[0, 3], [2, 0]])
    assert np.issubdtype(out.dtype, np.integer)


@pytest.mark.parametrize(
    "values, match",
    [
        ([[0.2, 0.9]], "probability map"),
        ([[-1.0, 2.0]], "negative"),
    ],
)
def test_read_mask_refuses_what_is_not_a_mask(tmp_path, values, match):
    tifffile.imwrite(tmp_path / "bad.tif", np.array(values, np.float32))
    with pytest.raises(ValueError, match=match):
        read_mask(tmp_path / "bad.tif")


def test_read_mask_refuses_jpeg_and_stacks(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.jpg")
    with pytest.raises(ValueError, match=r"m\.jpg.*lossy"):
        read_mask(tmp_path / "m.jpg")
    tifffile.imwrite(
        tmp_path / "s.tif",
        np.zeros((3, 8, 8), np.uint8),
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    with pytest.raises(ValueError, match=r"s\.tif is not a single 2-D mask"):
        read_mask(tmp_path / "s.tif")


def test_read_mask_refuses_cellpose_npy(tmp_path):
    (tmp_path / "x_seg.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(ValueError, match="pickles"):
        read_mask(tmp_path / "x_seg.npy")


# ------------------------------------------------------------------------------ writers
@pytest.mark.parametrize(
    "name, top, dtype",
    [
        ("a.png", 255, np.uint8),
        ("b.png", 256, np.uint16),
        ("c.tif", 70000, np.uint32),
        ("d.tiff", 3, np.uint8),
    ],
)
def test_write_mask_round_trip_and_dtype(tmp_path, name, top, dtype):
    labels = np.array([[0, 1], [2, top]], np.int64)
    path = write_mask(tmp_path / name, labels)
    back = read_mask(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)


def test_write_mask_bool_is_0_255(tmp_path):
    write_mask(tmp_path / "m.png", np.array([[True, False]]))
    with Image.open(tmp_path / "m.png") as img:
        np.testing.assert_array_equal(np.asarray(img), [[255, 0]])


def test_write_mask_refuses_overwrite_and_bad_input(tmp_path):
    path = write_mask(tmp_path / "sub" / "m.png", np.ones((2, 2), np.uint8))  # folder made
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="m.png"):
        write_mask(path, np.zeros((2, 2), np.uint8))
    assert path.read_bytes() == before  # untouched
    write_mask(path, np.zeros((2, 2), np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_mask(path), 0)
    with pytest.raises(ValueError, match="70000"):
        write_mask(tmp_path / "big.png", np.array([[0, 70000]]))
    with pytest.raises(ValueError, match="unsupported extension"):
        write_mask(tmp_path / "m.jpg", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="non-negative"):
        write_mask(tmp_path / "neg.png", np.array([[0, -1]]))
    with pytest.raises(ValueError, match="whole numbers"):
        write_mask(tmp_path / "p.png", np.array([[0.0, 0.4]]))
    assert sorted(os.listdir(tmp_path / "sub")) == ["m.png"]  # no temporary left behind
    assert not (tmp_path / "big.png").exists()


def test_write_image_probability_maps(tmp_path):
    proba = np.array([[0.0, 0.25], [0.5, 1.0]])
    write_image(tmp_path / "p.tif", proba)
    stored = tifffile.imread(tmp_path / "p.tif")
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, [[0, 16384], [32768, 65535]])  # round(p * 65535)
    write_image(tmp_path / "p.png", proba)
    with Image.open(tmp_path / "p.png") as img:
        np.testing.assert_array_equal(np.asarray(img), [[0, 64], [128, 255]])  # round(p * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_image(tmp_path / "q.tif", proba * 2)


def test_write_image_overlay_rgb_round_trip(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[1, 1] = (0, 255, 0)
    write_image(tmp_path / "o.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "o.png", channel=1)[1], [0, 255, 0, 0, 0])
    write_image(tmp_path / "o.tif", rgb)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tif"), rgb)
    write_image(tmp_path / "o.jpg", rgb)
    assert read_image(tmp_path / "o.jpg").shape == (4, 5)
    with pytest.raises(FileExistsError):
        write_image(tmp_path / "o.png", rgb)


def test_write_image_16bit(tmp_path):
    data = np.array([[0, 1000], [40000, 65535]], np.uint16)
    write_image(tmp_path / "i.png", data)
    write_image(tmp_path / "i.tif", data)
    with Image.open(tmp_path / "i.png") as img:
        np.testing.assert_array_equal(np.asarray(img), data)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "i.tif"), data)


def test_planar_rgb_tiff_luma_and_channel(tmp_path):
    planes = np.stack([np.full((6, 7), v, np.uint8) for v in (100, 50, 200)])  # (3, H, W)
    tifffile.imwrite(tmp_path / "p.tif", planes, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), 82)  # luma, as for PNG
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif", channel=2), 200)
