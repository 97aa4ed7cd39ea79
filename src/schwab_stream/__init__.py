"""schwab-stream: a Charles Schwab account as a reliable, fast market-data feed on Redis Streams."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("schwab-stream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
