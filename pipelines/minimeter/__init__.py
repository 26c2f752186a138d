"""Minimeter: smart-meter data minimisation."""
