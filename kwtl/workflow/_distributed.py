"""Spreading a step's images over the workers of a Dask cluster (``--scheduler``).

``kwtl predict`` and ``kwtl select`` compute image by image; with a scheduler address the
per-image computations (prediction; a selector's scores) run on the cluster's workers
while this process keeps everything else (reading, writing, checkpoints, the choice), so
the results are those of a plain run. The model is sent to each worker once.
"""

import contextlib

__all__ = ["DaskExecutor", "dask_client", "predict_one"]


@contextlib.contextmanager
def dask_client(address):
    """A ``distributed.Client`` connected to ``address`` (None: no client)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(
            "--scheduler needs Dask's distributed scheduler: pip install 'kwtl[dask]'"
        ) from None
    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise OSError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def predict_one(segmenter, image):
    """A worker's job for ``kwtl predict``: the probability map of one image."""
    return segmenter.predict_proba([image])[0]


class DaskExecutor:
    """``submit(function, selector, model, part)`` on a Dask client, for
    :meth:`kwtl.selection.BaseSelector.select_support`'s ``executor``: the selector and the
    model are sent to every worker once, the candidates of each image with its job."""

    def __init__(self, client):
        self.client, self._sent = client, {}

    def submit(self, function, selector, model, *args):
        key = (id(selector), id(model))
        if key not in self._sent:
            self._sent[key] = self.client.scatter([selector, model], broadcast=True)
        return self.client.submit(function, *self._sent[key], *args, pure=False)
