"""A tiny synthetic source folder, target folder and model file for the workflow tests."""

import pytest

from kwtl.datasets import make_cells
from kwtl.workflow import pretrain
from workflow_helpers import TINY, write_folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    src_x, src_y = make_cells(3, 32, domain="fluorescence", random_state=0)
    tgt_x, tgt_y = make_cells(3, 48, domain="em", random_state=1)
    source = write_folder(root / "source", src_x, src_y)
    target = write_folder(root / "target", tgt_x)
    model = root / "model.kwtl"
    pretrain([source], model, progress=False, **TINY)
    return {
        "root": root,
        "source": source,
        "target": target,
        "model": model,
        "target_images": tgt_x,
        "target_masks": tgt_y,
    }
