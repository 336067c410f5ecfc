import numpy as np
import pytest

from kwtl.datasets import PatchSet, extract_patches, patch_coordinates, stitch_patches


def test_grid_matches_spec_counts():
    # SPEC §3.3 grid counts per image (target steps)
    assert len(patch_coordinates([(1024, 1024)], 256, 30)) == 26 * 26
    assert len(patch_coordinates([(768, 1024)], 256, 30)) == 18 * 26
    assert len(patch_coordinates([(520, 696)], 256, (50, 26))) == 6 * 17
    assert len(patch_coordinates([(512, 512)], 256, 28)) == 10 * 10


def test_coordinates_row_major_with_provenance():
    coords = patch_coordinates([(4, 6), (5, 5)], patch_size=(2, 3), stride=(2, 3))
    assert coords.tolist() == [[0, 0, 0], [0, 0, 3], [0, 2, 0], [0, 2, 3], [1, 0, 0], [1, 2, 0]]


def test_cover_border_adds_last_window():
    coords = patch_coordinates([(5, 5)], 2, 2, cover_border=True)
    assert sorted({int(r) for r in coords[:, 1]}) == [0, 2, 3]


def test_extract_stitch_round_trip():
    rng = np.random.default_rng(0)
    images = [rng.random((9, 11)), rng.random((7, 7))]
    patches, coords = extract_patches(images, patch_size=4, stride=3, cover_border=True)
    for i, r, c in coords[:5]:
        pass
    assert np.array_equal(patches[0], images[0][:4, :4])
    back = stitch_patches(patches, coords, [im.shape for im in images])
    for a, b in zip(back, images):
        np.testing.assert_allclose(a, b)


def test_stitch_leaves_uncovered_pixels_to_fill_value():
    image = np.ones((5, 5))
    patches, coords = extract_patches([image], 2, 2)  # rows/cols 4 uncovered
    back = stitch_patches(patches, coords, [image.shape], fill_value=-1)[0]
    assert np.all(back[4, :] == -1) and np.all(back[:4, :4] == 1)


def test_patchset_is_lazy_and_consistent():
    images = [np.arange(64, dtype=np.uint8).reshape(8, 8)]
    masks = [np.arange(64).reshape(8, 8) % 2 == 0]
    ps = PatchSet.from_images(images, 4, 2)
    mps = ps.with_arrays(masks)
    assert len(ps) == 9
    assert np.array_equal(ps[4], images[0][2:6, 2:6])
    assert np.array_equal(mps[[4]][0], masks[0][2:6, 2:6])
    batches = list(ps.iter_batches(4))
    assert [len(i) for i, _ in batches] == [4, 4, 1]
    assert np.array_equal(np.concatenate([b for _, b in batches]), ps[np.arange(9)])
    sub = ps.subset([8, 0])
    assert sub.coords.tolist() == [[0, 4, 4], [0, 0, 0]]
    stack = PatchSet.from_stack(np.zeros((3, 4, 4), np.uint8))
    assert len(stack) == 3 and stack.patch_size == (4, 4)


def test_patch_errors():
    with pytest.raises(ValueError, match="smaller than the patch"):
        patch_coordinates([(10, 10)], 16, 4)
    with pytest.raises(ValueError, match="positive"):
        patch_coordinates([(10, 10)], 4, 0)
    with pytest.raises(ValueError, match="leaves image"):
        PatchSet([np.zeros((4, 4))], [[0, 2, 2]], 4)
    with pytest.raises(ValueError, match="expected 1 arrays"):
        PatchSet.from_images([np.zeros((4, 4))], 2, 2).with_arrays([])
    with pytest.raises(ValueError, match="shape"):
        PatchSet.from_images([np.zeros((4, 4))], 2, 2).with_arrays([np.zeros((5, 4))])
