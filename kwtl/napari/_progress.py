"""Progress and cancellation of kwtl's steps for widgets, through their tqdm bars.

The workflow steps report progress with tqdm bars (``progress=True``). A widget runs a
step in a worker thread inside :func:`reporting`: while it runs, every tqdm bar that kwtl
opens *in that thread* forwards its position to the widget's callback, and raises
:class:`StepCancelled` at its next tick once the widget asked to cancel. The steps write
their results atomically and resume, so a cancelled step loses at most the work since its
last checkpoint. Bars of other threads (and of programs without widgets) are untouched.
"""

import contextlib
import sys
import threading

from tqdm.auto import tqdm as _auto_tqdm

__all__ = ["StepCancelled", "reporting"]

_local = threading.local()
_installed = set()


class StepCancelled(Exception):
    """Raised inside a step when its widget's cancel button was pressed."""


class _Reporter:
    def __init__(self, callback):
        self.callback = callback
        self.cancelled = threading.Event()


def _current():
    return getattr(_local, "reporter", None)


class _ForwardingTqdm(_auto_tqdm):
    """tqdm that forwards to the current thread's reporter (and can be cancelled)."""

    def __init__(self, *args, **kwargs):
        reporter = _current()
        if reporter is not None:
            kwargs["disable"] = False  # the widget wants the numbers ...
            kwargs["file"] = _Null()  # ... not the text
        super().__init__(*args, **kwargs)
        self._reporter = reporter
        self._tell()

    def _tell(self):
        reporter = self._reporter
        if reporter is None:
            return
        if reporter.cancelled.is_set():
            raise StepCancelled("cancelled")
        reporter.callback(str(self.desc or ""), int(self.n), int(self.total or 0))

    def update(self, n=1):
        shown = super().update(n)
        self._tell()
        return shown


class _Null:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _install():
    """Point every loaded kwtl module's ``tqdm`` at the forwarding class (idempotent)."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("kwtl.") or module is None or name in _installed:
            continue
        if getattr(module, "tqdm", None) is _auto_tqdm:
            module.tqdm = _ForwardingTqdm
            _installed.add(name)


@contextlib.contextmanager
def reporting(callback):
    """Within the block, this thread's kwtl progress bars call ``callback(desc, n, total)``.

    Yields an object whose ``cancelled`` event, once set (from any thread), makes the
    step raise :class:`StepCancelled` at its next progress tick.
    """
    import kwtl.workflow  # noqa: F401  (load the steps' modules before patching them)

    _install()
    reporter = _Reporter(callback)
    previous, _local.reporter = _current(), reporter
    try:
        yield reporter
    finally:
        _local.reporter = previous
