"""Helpers of the workflow tests: tiny settings, folder writer, the annotator."""
import numpy as np

from kwtl.workflow._files import write_array

TINY = dict(width=4, patch_size=16, stride=8, meta_iterations=2, inner_steps=1)


def write_folder(root, images, masks=None, suffix=".png"):
    for i, image in enumerate(images):
        write_array(root / ("images" if masks is not None else "") / f"img{i:02d}{suffix}",
                    image)
        if masks is not None:
            write_array(root / "masks" / f"img{i:02d}{suffix}", masks[i].astype(np.uint8) * 255)
    return root


def draw_masks(todo, truth_by_name):
    """The annotator: every mask_file of selection.csv cut from the ground truth."""
    from kwtl.workflow import read_selection

    table = read_selection(todo)
    for row in table.itertuples():
        truth = truth_by_name[row.source_image]
        if row.image_file.split("/")[-1].startswith(f"{row.source_image}_r"):
            size = int(row.size)
            truth = truth[row.row:row.row + size, row.col:row.col + size]
        write_array(todo / row.mask_file, truth.astype(np.uint8))
    return table
