"""livestream-exporter: a Prometheus exporter for live-stream audience analytics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("livestream-exporter")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
