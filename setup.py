"""Packaging for kwtl ("knowing what to label")."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "kwtl" / "__init__.py").read_text()
).group(1)

setup(
    name="kwtl",
    version=VERSION,
    description=(
        "Knowing what to label: choose which microscopy patches to annotate for "
        "few-shot cell segmentation (Dawoud et al., WACV 2023)"
    ),
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["kwtl", "kwtl.*"]),
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-learn>=1.6",
        "scikit-image>=0.22",
        "torch>=2.2",
        "skorch>=1.0",
        "joblib>=1.3",
        "pillow>=10",
        "tifffile>=2023.1",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={
        "tests": ["pytest>=7", "dask[distributed]>=2024.1"],
        "dask": ["dask[distributed]>=2024.1"],
        "docs": ["sphinx>=7", "sphinx-gallery>=0.15", "numpydoc>=1.6", "pydata-sphinx-theme"],
    },
    entry_points={"console_scripts": ["kwtl=kwtl.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
