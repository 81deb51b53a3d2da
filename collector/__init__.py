"""collector: Devin API v3 session metrics, collected into SQL tables you own."""

#: The one place the version is written (pyproject.toml reads it from here), so importing
#: the package reads no installed metadata.
__version__ = "0.1.0"

__all__ = ["__version__"]
