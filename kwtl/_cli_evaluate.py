"""``kwtl evaluate`` on the command line (:func:`kwtl.workflow.evaluate`): its parser and
its table on the console, kept beside :mod:`kwtl.cli`."""

import argparse

__all__ = ["add_evaluate_parser", "run_evaluate"]


def add_evaluate_parser(sub):
    """``kwtl evaluate``: predicted masks against a lab's own few true masks."""
    ev = sub.add_parser(
        "evaluate",
        help="score predicted masks against a few true masks",
        formatter_class=argparse.HelpFormatter,
        description="Compare the masks of MASKS_DIR (kwtl predict's --out, or any folder of "
        "masks) with the true masks of the images you labelled yourself, paired by name: "
        "foreground IoU per image and the mean over images (mIoU), and with --instances "
        "the objects matched one to one at IoU > 0.5 (precision, recall, F1). Prints a "
        "table; --out also writes it as CSV.",
    )
    ev.add_argument("masks", metavar="MASKS_DIR", help="predicted masks")
    ev.add_argument(
        "--truth",
        required=True,
        metavar="DIR",
        help="true masks: a folder of masks named like the images (PNG/TIFF), an annotated "
        "folder with masks/, or Cellpose x_masks.tif files",
    )
    ev.add_argument(
        "--instances",
        action="store_true",
        help="also match objects (binary masks are split into connected components): "
        "true, found and matched objects, precision, recall, F1",
    )
    ev.add_argument(
        "--suffix",
        default="",
        metavar="TEXT",
        help="stem suffix of the predicted masks in a plain folder, e.g. _masks (a kwtl "
        "predict folder records its own)",
    )
    ev.add_argument(
        "--out",
        default=None,
        metavar="FILE.csv",
        help="also write the table as CSV (one row per image, a last row 'all')",
    )
    ev.add_argument("--force", action="store_true", help="replace an existing --out file")


def run_evaluate(args):
    from .workflow import evaluate
    from .workflow._evaluate import format_table

    result = evaluate(
        args.masks,
        args.truth,
        instances=args.instances,
        out=args.out,
        mask_suffix=args.suffix,
        overwrite=args.force,
    )
    print(format_table(result.table))
    n = len(result.table) - 1
    print(
        f"mean IoU over {n} image(s): {100 * result.mean_iou:.1f}%"
        + (
            f"; {len(result.unscored)} predicted mask(s) without a true mask not scored"
            if result.unscored
            else ""
        )
        + (f"; wrote {result.path}" if result.path is not None else "")
    )
    return 0
