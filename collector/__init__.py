"""collector: Devin API v3 session metrics, collected into SQL tables you own."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("collector")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
