"""The annotation checks of kwtl finetune: inverted, painted and JPEG masks."""

import numpy as np
from skimage.segmentation import find_boundaries

from kwtl.datasets import make_cells, read_mask, write_image
from kwtl.workflow._mask_checks import check_foreground, check_mask_labels, lossy_siblings


def _cells():
    images, masks = make_cells(2, 128, domain="fluorescence", random_state=0)
    return images, [m > 0 for m in masks]


def test_inverted_masks_are_flagged_with_the_numbers():
    _, masks = _cells()
    fraction = np.mean([m.mean() for m in masks])
    assert fraction < 0.5
    assert check_foreground(masks, predicted_fraction=fraction) is None
    problem = check_foreground([~m for m in masks], predicted_fraction=fraction)
    assert problem is not None and f"{100 * (1 - fraction):.1f}%" in problem
    assert "inverted" in problem


def test_nearly_all_foreground_is_flagged_without_a_prediction():
    mask = np.ones((20, 20), bool)
    mask[0, :3] = False  # 99.25 %
    assert "more than 90%" in check_foreground([mask])
    assert check_foreground([mask[:, :10] & False]) is None  # empty masks are legitimate


def test_a_model_that_over_predicts_does_not_flag_sparse_masks():
    """EM: true foreground ~5 %, PLFT models predict ~50 %: the masks are right."""
    mask = np.zeros((20, 20), bool)
    mask[:1] = True
    assert check_foreground([mask], predicted_fraction=0.55) is None


def test_painted_picture_is_refused_and_a_clean_colour_mask_is_not(tmp_path):
    images, masks = _cells()
    grey = images[0]
    painted = np.repeat(grey[..., None], 3, axis=2)
    painted[masks[0]] = (255, 0, 0)  # cells painted red on the picture
    write_image(tmp_path / "painted.png", painted)
    labels = read_mask(tmp_path / "painted.png")
    problem = check_mask_labels(labels, tmp_path / "painted.png", colour=True)
    assert problem is not None and "painted" in problem and "on black" in problem
    clean = np.zeros_like(painted)
    clean[masks[0]] = (255, 0, 0)  # red cells on black
    write_image(tmp_path / "clean.png", clean)
    assert check_mask_labels(read_mask(tmp_path / "clean.png"), "clean.png", True) is None


def test_instance_labels_pass_and_smoothed_edges_do_not():
    from scipy import ndimage

    _, masks = _cells()
    labels, n = ndimage.label(masks[0])
    assert n >= 8
    assert check_mask_labels(labels, "labels.png") is None
    smooth = (ndimage.gaussian_filter(masks[0].astype(float), 1.5) * 255).astype(np.uint8)
    assert len(np.unique(smooth)) > 8
    assert "smoothed edges" in check_mask_labels(smooth, "smooth.png")
    edges = find_boundaries(labels)
    assert check_mask_labels(np.where(edges, 0, labels), "cut.png") is None


def test_jpeg_siblings_are_found(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "x.jpg").write_bytes(b"")
    (tmp_path / "masks" / "y.png").write_bytes(b"")
    assert [p.name for p in lossy_siblings(tmp_path / "masks" / "x.png")] == ["x.jpg"]
    assert lossy_siblings(tmp_path / "masks" / "y.png") == []
    assert lossy_siblings(tmp_path / "nowhere" / "x.png") == []
