"""Minimeter: smart-meter data minimisation."""

__version__ = "0.1.0"
