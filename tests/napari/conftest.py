"""The napari tests need Qt with OpenGL: an X display (pytest-xvfb starts Xvfb on Linux).

Qt's ``offscreen`` platform has no OpenGL, which napari's canvas needs ("QOpenGLWidget is
not supported on this platform"), so these tests run on the ``xcb`` platform of the
display pytest-xvfb gives them (or the real one). Without a display they fail with a
message saying what to install: they are never skipped.
"""

import os
import sys
from pathlib import Path

import pytest

if sys.platform.startswith("linux"):
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen" and os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "xcb"  # offscreen has no OpenGL; Xvfb shows nothing


@pytest.fixture(autouse=True)
def _display_present():
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        pytest.fail(
            "the napari tests need an X display: install Xvfb (Debian: apt-get "
            "install xvfb libxcb-icccm4 libxcb-keysyms1); pytest-xvfb (in the tests "
            "extra) then starts it",
            pytrace=False,
        )


@pytest.fixture
def screenshot_dir(tmp_path):
    """Where the tests save their viewer grabs: ``$KWTL_SCREENSHOTS`` (e.g. docs/_static,
    to refresh the documentation's pictures), else a temporary folder."""
    folder = Path(os.environ.get("KWTL_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
