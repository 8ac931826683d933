"""What every provider relies on: one registry, checked samples, typed errors, contained bugs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import exporter.providers
from exporter.config.registry import PROVIDERS
from exporter.model.errors import (
    AuthError,
    ErrorKind,
    GoneError,
    InternalError,
    ParseError,
    PollTimeout,
    ThrottledError,
    UpstreamError,
)
from exporter.model.redaction import REDACTOR
from exporter.model.samples import Sample, UnknownMetricError
from exporter.providers.base import Provider
from tests import fakevendor
from tests.conftest import tv_source
from tests.fakevendor import API_KEY
from tests.pollhelpers import build_rig, tv, value


def test_the_registry_holds_exactly_the_providers_the_package_defines():
    """A vendor module is found by its registration alone: no second list names it."""
    defined = {}
    for info in pkgutil.iter_modules(exporter.providers.__path__):
        module = importlib.import_module(f"exporter.providers.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Provider) and cls is not Provider and cls.__module__ == module.__name__:
                defined[cls.name] = cls
    registered = {name: cls for name, cls in PROVIDERS.items() if name != "testvendor"}
    assert registered == defined
    package = Path(exporter.providers.__file__).read_text()
    assert not [name for name in defined if name in package], "the package __init__ lists vendors"


def test_a_sample_is_checked_when_it_is_made():
    assert Sample.of("livestream_status", 1, status="LIVE").labels == (("status", "LIVE"),)
    with pytest.raises(UnknownMetricError, match="livestream_concurent_viewers"):
        Sample.of("livestream_concurent_viewers", 1)
    with pytest.raises(UnknownMetricError, match="extra labels"):
        Sample.of("livestream_live", 1, status="LIVE")
    with pytest.raises(UnknownMetricError, match="extra labels"):
        Sample.of("livestream_status", 1)
    with pytest.raises(ValueError, match="finite"):
        Sample.of("livestream_live", float("nan"))


@pytest.mark.parametrize(
    ("error", "kind", "backoff"),
    [
        (AuthError("x"), ErrorKind.AUTH, False),
        (ThrottledError("x", retry_after=3), ErrorKind.THROTTLED, True),
        (UpstreamError("x"), ErrorKind.UPSTREAM, False),
        (UpstreamError("x", status=404), ErrorKind.UPSTREAM, False),
        (UpstreamError("x", status=503), ErrorKind.UPSTREAM, True),
        (UpstreamError("x", transient=True), ErrorKind.UPSTREAM, True),
        (PollTimeout("x"), ErrorKind.TIMEOUT, True),
        (ParseError("x"), ErrorKind.PARSE, False),
        (GoneError("x"), ErrorKind.GONE, False),
        (InternalError("x"), ErrorKind.INTERNAL, False),
    ],
)
def test_an_error_carries_its_kind_and_back_off_from_construction(error, kind, backoff):
    assert error.kind is kind
    assert error.backoff is backoff
    with pytest.raises(AttributeError):
        error.backoff = not backoff  # type: ignore[misc]


@pytest.fixture
def misspelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test provider misspells a metric for stream "b" only."""
    real = fakevendor.TestVendor._samples

    def samples(self: fakevendor.TestVendor, doc: Any) -> Any:
        if doc.get("viewers") == 200.0:
            return [Sample.of("livestream_concurent_viewers", doc["viewers"])]
        return real(self, doc)

    monkeypatch.setattr(fakevendor.TestVendor, "_samples", samples)


async def test_a_misspelt_metric_fails_only_its_own_target(
    vendor, vendor_url, write_config, misspelling, logs
):
    rig = build_rig(write_config([tv_source(vendor_url)]))
    try:
        await rig.runner.run_cycle()
        samples = rig.scrape()
        assert value(samples, "livestream_concurrent_viewers", **tv("a")) == 100
        assert value(samples, "livestream_concurrent_viewers", **tv("c")) == 300
        assert value(samples, "livestream_target_up", **tv("b")) == 0
        assert rig.store.sources["tv"].targets["b"].error == "internal"
        tracebacks = [line for line in logs if "Traceback" in line]
        assert len(tracebacks) == 1 and "UnknownMetricError" in tracebacks[0]
        assert "level=error" in tracebacks[0] and "provider failed unexpectedly" in tracebacks[0]

        await rig.runner.run_cycle()  # the same bug again: one debug line, no second traceback
        assert len([line for line in logs if "Traceback" in line]) == 1
        assert any("level=debug" in line and "provider failed unexpectedly" in line for line in logs)
    finally:
        await rig.close()


async def test_a_provider_bug_is_logged_with_its_traceback_redacted(
    vendor, vendor_url, write_config, monkeypatch, logs
):
    async def leaky(self: fakevendor.TestVendor, batch: Any) -> Any:
        raise KeyError(f"no such field in the answer to key {API_KEY}")

    monkeypatch.setattr(fakevendor.TestVendor, "poll", leaky)
    rig = build_rig(write_config([tv_source(vendor_url)]))
    REDACTOR.set_secrets(rig.config.secrets())  # as the daemon does on every load
    try:
        await rig.runner.run_cycle()
    finally:
        REDACTOR.set_secrets(())
        await rig.close()
    (line,) = [line for line in logs if "Traceback" in line]
    assert "KeyError" in line and "<redacted>" in line
    assert not any(API_KEY in line for line in logs)
