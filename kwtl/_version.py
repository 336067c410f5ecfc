"""kwtl's version, in a module of its own so that any part of kwtl can record it without
importing the package root (which pulls in the whole method)."""

__version__ = "0.1.0"
