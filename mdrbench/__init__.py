"""mdrbench: the open benchmark for multi-domain recommendation."""

__version__ = "0.1.0"
