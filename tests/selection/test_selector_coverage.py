"""Every public selector has a test class built on the template, and every parameter a test."""

import importlib
import inspect
from pathlib import Path

import kwtl.selection
from kwtl.selection import BaseSelector
from selector_template import SelectorTemplate


def public_selectors():
    return [
        obj
        for name in kwtl.selection.__all__
        for obj in [getattr(kwtl.selection, name)]
        if inspect.isclass(obj) and issubclass(obj, BaseSelector) and not inspect.isabstract(obj)
    ]


def template_test_classes():
    """The test classes of tests/selection/test_*.py that inherit the template."""
    classes = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(path.stem)  # this folder is on sys.path (pytest)
        classes += [
            obj
            for name, obj in vars(module).items()
            if name.startswith("Test")
            and inspect.isclass(obj)
            and issubclass(obj, SelectorTemplate)
            and obj.selector_class is not None
        ]
    return classes


def test_every_public_selector_has_a_template_test_class():
    tested = {cls.selector_class for cls in template_test_classes()}
    missing = [cls.__name__ for cls in public_selectors() if cls not in tested]
    assert not missing, f"no test class inheriting SelectorTemplate for {missing}"
    assert len(public_selectors()) >= 4


def test_every_init_parameter_has_a_test():
    untested = []
    for test_class in template_test_classes():
        for param in test_class.selector_class._get_param_names():
            if not callable(getattr(test_class, f"test_param_{param}", None)):
                untested.append(f"{test_class.__name__}.test_param_{param}")
    assert not untested, f"parameters without a test: {untested}"
