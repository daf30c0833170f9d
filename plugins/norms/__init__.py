"""Normalisation layers: ``Norm(channels, ...)``, ``norm(x, batch=None)``."""
