"""The version of textlab (one place: pyproject.toml reads it too? no: keep the two in step)."""

__version__ = "0.2.0"
