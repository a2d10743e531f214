"""Traction: a self-hosted product-led growth engine."""

__version__ = "0.1.0"
