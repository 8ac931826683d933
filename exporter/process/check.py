"""`--config.check`: what the daemon would poll, with the plan it would follow."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import structlog

from exporter.config.loader import Config
from exporter.config.schema import SourceBase
from exporter.engine.runner import SourceMemory, SourceRunner
from exporter.engine.targetlists import NO_MATCH, count_file_targets
from exporter.model.clock import SYSTEM_CLOCK
from exporter.model.durations import format_duration
from exporter.model.redaction import REDACTOR
from exporter.model.windows import Window
from exporter.store.store import Store


def plans(config: Config) -> dict[str, tuple[float, float, int]]:
    """Configured interval, effective interval and requests per cycle of every source.

    Built with the same runners the daemon uses (they send nothing until scheduled), so
    `--config.check` prints exactly the plan the daemon would follow.
    """
    # the runners only plan here; anything they log would be noise in a check
    quiet = structlog.wrap_logger(None, wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    store = Store()
    memories = {s.name: SourceMemory.carried(s, None) for s in config.sources}
    store.keep_sources((s.name, s.provider, memories[s.name].stats) for s in config.sources)
    out = {}
    for source in config.sources:
        runner = SourceRunner(
            config=config,
            source=source,
            sink=store,
            memory=memories[source.name],
            clock=SYSTEM_CLOCK,
            log=quiet,
        )
        runner.preload_external()
        out[source.name] = (
            runner.configured_interval,
            runner.interval,
            sum(runner.requests_per_cycle().values()),
        )
    return out


def _budget(source: SourceBase, bucket: str, windows: Sequence[Window]) -> str:
    """'600/1m (set by rate_limit)', 'list requests 100/1s (the vendor's limit)'."""
    limits = " and ".join(str(w) for w in windows)
    where = "set by rate_limit" if bucket == "default" and source.rate_limit else "the vendor's limit"
    return f"{limits} ({where})" if bucket == "default" else f"{bucket} requests {limits} ({where})"


def file_problems(config: Config) -> list[str]:
    """The target files that are there but cannot be used, one line each."""
    return [
        f"{origin}: {counted}"
        for s in config.sources
        for origin, counted in count_file_targets(s)
        if isinstance(counted, str) and counted != NO_MATCH
    ]


def describe(config: Config, plans: Mapping[str, tuple[float, float, int]]) -> str:
    """What `--config.check` prints: sources, targets, effective intervals and budgets."""
    lines = [f"{config.file}: configuration is valid, {len(config.sources)} source(s)"]
    for s in config.sources:
        interval, effective, n = plans[s.name]
        budgets = "; ".join(_budget(s, bucket, windows) for bucket, windows in config.windows_of(s).items())
        note = (
            ""
            if effective <= interval
            else f" (lengthened from {format_duration(interval)} by the rate limit)"
        )
        lines.append(f"source {s.name} (provider {s.provider}) {config.base_url_of(s)}")
        lines.append(
            f"  interval {format_duration(effective)}{note}, requests per cycle {n}, budget {budgets}"
        )
        if s.discovery_enabled():
            lines.append("  discovery: on (targets are added and removed as the vendor lists them)")
        for origin, counted in count_file_targets(s):
            what = f"{counted} targets" if isinstance(counted, int) else counted
            lines.append(f"  targets file {origin}: {what}")
        if s.targets_url is not None:
            every = format_duration(s.targets_url.refresh_interval)
            lines.append(f"  targets url {s.targets_url.url} (every {every}; not fetched by the check)")
        for t in s.targets:
            lines.append(f"  target {t.key()} -> stream={t.stream_label()!r}")
    if config.cluster is not None:
        c = config.cluster
        lines.append(
            f"cluster: replicas share every budget through {REDACTOR.scrub(c.redis_url)}"
            f" (heartbeat TTL {format_duration(c.heartbeat_ttl)}, keys {c.key_prefix}:*); each polls the"
            " targets it owns (not connected by the check)"
        )
    lines.extend(f"warning: {w}" for w in config.warnings())
    return "\n".join(lines)
