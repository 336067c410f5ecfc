"""Progress reporting of long steps, behind one ``progress`` argument.

The library prints nothing by itself: a long step takes ``progress`` — False/None (silent),
True (a tqdm bar with the time left) or a callable ``progress(done, total)`` (e.g. a GUI's
progress bar; called after every unit of work).
"""

from tqdm.auto import tqdm  # module-level: kwtl.napari re-points it to report to widgets

__all__ = ["progress_bar"]


class _Silent:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


class _Callback:
    def __init__(self, report, total, initial):
        self.report, self.total, self.done = report, total, initial

    def update(self, n=1):
        self.done += n
        self.report(self.done, self.total)

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def progress_bar(progress, total, desc, unit, initial=0):
    """An object with ``update(n)``, ``set_postfix(**values)`` and ``close()``.

    Parameters
    ----------
    progress : bool, None or callable
        False/None: silent; True: a tqdm bar; a callable: ``progress(done, total)``.
    total : int
    desc, unit : str
        The bar's label and unit.
    initial : int, default=0
        Units already done (a resumed step).

    Examples
    --------
    >>> seen = []
    >>> bar = progress_bar(lambda done, total: seen.append((done, total)), 3, "work", "it")
    >>> bar.update(1); bar.update(2); bar.close()
    >>> seen
    [(1, 3), (3, 3)]
    """
    if not progress:
        return _Silent()
    if callable(progress):
        return _Callback(progress, total, initial)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit)
