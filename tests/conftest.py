import os
from pathlib import Path

import numpy as np
import pytest
import torch

#: The real datasets shared beside the checkout (CI has them there).
SHARED_DATA = Path(
    os.environ.get(
        "KWTL_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


@pytest.fixture(autouse=True)
def _few_threads():
    # keep unit tests deterministic and friendly to 2-core machines
    # tiny networks run fastest single-threaded, and results do not depend on load
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.default_rng(0)
