"""Helpers of the workflow tests: tiny settings, folder writer, the annotator."""

from kwtl.datasets import write_image, write_mask

TINY = dict(width=4, patch_size=16, stride=8, meta_iterations=2, inner_steps=1)


def write_folder(root, images, masks=None, suffix=".png"):
    for i, image in enumerate(images):
        write_image(root / ("images" if masks is not None else "") / f"img{i:02d}{suffix}", image)
        if masks is not None:
            write_mask(root / "masks" / f"img{i:02d}{suffix}", masks[i])
    return root


def draw_masks(todo, truth_by_name):
    """The annotator: every mask_file of selection.csv cut from the ground truth."""
    from kwtl.workflow import read_selection

    table = read_selection(todo)
    for row in table.itertuples():
        truth = truth_by_name[row.source_image]
        if row.image_file.split("/")[-1].startswith(f"{row.source_image}_r"):
            size = int(row.size)
            truth = truth[row.row : row.row + size, row.col : row.col + size]
        write_mask(todo / row.mask_file, truth)
    return table
