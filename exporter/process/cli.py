"""The command: flags, `--config.check`, serving or the demo, and the exit codes.

Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 2 invalid flags or configuration (one
readable message, no traceback), 1 anything else.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from structlog.typing import FilteringBoundLogger

from exporter.config.loader import load_config, with_cluster_url
from exporter.config.problems import ConfigError
from exporter.model.redaction import REDACTOR
from exporter.process import logsetup
from exporter.process.check import describe, file_problems, plans
from exporter.process.daemon import Exporter
from exporter.process.demo import run_demo
from exporter.process.serve import serve
from exporter.process.settings import Settings, parse_args
from exporter.web.webconfig import LiveWebConfig, load_web_config


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    logsetup.setup(settings.log_level, settings.log_format)
    log = logsetup.get_logger()
    try:
        if settings.demo:
            return _run_demo(settings, log)
        return _run(settings, log)
    except ConfigError as e:
        print(REDACTOR.scrub(str(e)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except Exception as e:
        log.error("exporter failed", exc_type=type(e).__name__, reason=str(e))
        return 1


def _check(settings: Settings, exporter: Exporter) -> int:
    config = exporter.load(warn=False)  # describe() prints the warnings
    print(describe(config, plans(config)))
    if settings.web_config_file:
        load_web_config(settings.web_config_file)
        print(f"{settings.web_config_file}: web configuration is valid")
    problems = file_problems(config)
    for line in problems:
        print(line, file=sys.stderr)
    return 2 if problems else 0


def _run(settings: Settings, log: FilteringBoundLogger) -> int:
    url = settings.cluster_redis_url
    exporter = Exporter(
        settings.config_file, log=log, loader=lambda file: with_cluster_url(load_config(file), url)
    )
    if settings.config_check:
        return _check(settings, exporter)
    config = exporter.load()
    web_config = LiveWebConfig(settings.web_config_file, log) if settings.web_config_file else None
    return asyncio.run(serve(settings, exporter, config, web_config))


def _run_demo(settings: Settings, log: FilteringBoundLogger) -> int:
    web_config = LiveWebConfig(settings.web_config_file, log) if settings.web_config_file else None
    return asyncio.run(run_demo(settings, log, web_config))
