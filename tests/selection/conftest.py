import pytest
import torch

from kwtl.datasets import PatchSet
from selector_template import PATCH, STRIDE, _calibrated_segmenter, _images


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks gain nothing from threads, and OpenMP spinning makes 2 threads very slow
    # when the CPU is shared with other jobs
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def seg():
    return _calibrated_segmenter()


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def pool(images):
    return PatchSet.from_images(images, PATCH, STRIDE)
