"""File names of experiment outputs: one sanitiser for names that come from the data, and
the name of a job's result file (``<target>__<selector>__<n>shot__r<repeat>.json``)."""

import re

__all__ = ["parse_result_filename", "result_filename", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_RESULT_FILE = re.compile(
    r"(?P<target>.+)__(?P<selector>(?:(?!__).)+)__(?P<n_shots>\d+)shot__r(?P<repeat>\d+)\.json"
)


def safe_name(name):
    """``name`` usable in a file name: each character outside ``A-Za-z0-9_.-`` becomes ``_``.

    One character for one, so distinct names of the same length stay distinct more often,
    and the result files of earlier runs keep their names (resume finds them). An empty
    name becomes ``"_"``.

    Examples
    --------
    >>> safe_name("ssTEM"), safe_name("my data/set 2"), safe_name("")
    ('ssTEM', 'my_data_set_2', '_')
    """
    return _UNSAFE.sub("_", str(name)) or "_"


def result_filename(target, selector, n_shots, repeat):
    """The file name of one job's result record.

    Examples
    --------
    >>> result_filename("EM", "mc_dropout", 3, 0)
    'EM__mc_dropout__3shot__r0.json'
    """
    return f"{safe_name(target)}__{safe_name(selector)}__{int(n_shots)}shot__r{int(repeat)}.json"


def parse_result_filename(filename):
    """``(target, selector, n_shots, repeat)`` from a :func:`result_filename`, else ``None``.

    The target comes back as :func:`safe_name` made it. Selector names must not hold a
    double underscore or begin or end with one (those of :data:`kwtl.selection.SELECTORS`
    do not), or the split between target and selector is ambiguous.

    Examples
    --------
    >>> parse_result_filename("my_data__random__5shot__r2.json")
    ('my_data', 'random', 5, 2)
    >>> parse_result_filename("results.json") is None
    True
    """
    match = _RESULT_FILE.fullmatch(str(filename))
    if match is None:
        return None
    return (match["target"], match["selector"], int(match["n_shots"]), int(match["repeat"]))
