"""The package version, here so that every part can record it without importing the top package."""

__version__ = "0.1.0"
