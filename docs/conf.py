"""Sphinx configuration of the kwtl documentation.

Build (from this folder)::

    python -m pip install -e "..[docs]"
    python -m sphinx -b html . _build/html

The example gallery (``../examples``) is executed during the build; it takes well under a
minute on a CPU. Set ``KWTL_DOCS_PLOT_GALLERY=0`` to build without running the examples
(the gallery pages then show the code and text only). The build needs no network access.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # document the checkout even if it is not installed

os.environ.setdefault("MPLBACKEND", "Agg")

import kwtl  # noqa: E402

# -- project -------------------------------------------------------------------------------
project = "kwtl"
author = "the kwtl developers"
copyright = "the kwtl developers; method by Dawoud et al. (WACV 2023)"
version = release = kwtl.__version__

# -- general -------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
]
default_role = "code"
# intersphinx is deliberately not enabled: the build must work without network access.

# -- autodoc / autosummary / numpydoc ------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()


def _skip_member(app, what, name, obj, skip, options):
    """Hide scikit-learn's generated ``set_<method>_request`` helpers (documented upstream;
    their docstrings refer to scikit-learn's own glossary) and undocumented overrides."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    if what == "class" and callable(obj) and getattr(obj, "__doc__", None) is None:
        # an override without a docstring of its own (e.g. FCRNSegmenter's skorch hooks
        # ``infer``, ``get_dataset``): do not show the base class's text for it
        return True
    return skip


#: Descriptions of constants that have no ``#:`` comment in the source.
_DATA_DOCS = {
    "kwtl.experiments.PROFILES": [
        "The named experiment profiles of ``kwtl run`` and "
        ":func:`~kwtl.experiments.run_experiment`: ``{name: {setting: value}}``. "
        "See :ref:`cli-profiles` for what each profile is for and its full definition.",
    ],
    "kwtl.selection.SELECTORS": [
        "Selector classes by short name, as used by ``kwtl run --selectors``, the profiles, "
        "the result files and :func:`~kwtl.selection.make_selector`.",
    ],
}


def _data_docstring(app, what, name, obj, options, lines):
    """Document public constants re-exported by a subpackage.

    ``#:`` comments are read by autodoc only from the module being documented, and kwtl's
    constants are defined in private modules (``kwtl.pseudo_label._pseudo_label``) and
    re-exported. Find the defining module, take its comment, and show short values.
    """
    if what != "data":
        return
    import importlib
    import pkgutil
    import pprint

    from sphinx.pycode import ModuleAnalyzer

    package, _, attr = name.rpartition(".")
    # what autodoc found for an instance of a builtin type is that type's docstring
    # ("Built-in immutable sequence."): replace it by the constant's own comment
    lines[:] = []
    try:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(getattr(pkg, "__path__", []), package + "."):
            module = importlib.import_module(info.name)
            if getattr(module, attr, None) is obj:
                docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
                lines.extend(docs.get(("", attr), []))
                break
    except Exception:  # pragma: no cover - documentation must still build
        pass
    if not "".join(lines).strip():
        lines[:] = list(_DATA_DOCS.get(name, []))
    value = pprint.pformat(obj, width=88, sort_dicts=False)
    if len(value) <= 1000 and " at 0x" not in value:
        lines.extend(["", ".. code-block:: python", ""])
        lines.extend("    " + line for line in value.splitlines())
        lines.append("")


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _data_docstring)


# -- sphinx-gallery ------------------------------------------------------------------------
_plot_gallery = os.environ.get("KWTL_DOCS_PLOT_GALLERY", "1").lower() not in ("0", "false", "no")


# The examples run in this process: one torch thread is fastest for their tiny networks and
# makes their numbers reproducible.
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": str(_plot_gallery),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "write_computation_times": False,
    "backreferences_dir": None,
}


# -- generated pages -----------------------------------------------------------------------
def _write_cli_help():
    """Write ``kwtl COMMAND --help`` to ``generated/kwtl_COMMAND_help.txt`` (included by
    cli.rst), so the documented options are always those of the installed command. The
    files are made by every build and are not kept in the repository (.gitignore)."""
    import contextlib
    import io

    from kwtl.cli import main, subcommands

    os.environ["COLUMNS"] = "92"  # argparse wraps at the terminal width
    for command in subcommands():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            main([command, "--help"])
        out = HERE / "generated" / f"kwtl_{command}_help.txt"
        out.parent.mkdir(exist_ok=True)
        text = buffer.getvalue()
        if not out.exists() or out.read_text() != text:
            out.write_text(text)


_write_cli_help()

# -- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"kwtl {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
