"""The monitoring mixin: alerts, recording rules and dashboards from one settings file.

    python -m grafana.mixin                  # rewrite deploy/prometheus/*.yml and grafana/dashboards/*.json
    python -m grafana.mixin --check          # exit 1 if a committed file is not what the settings make
    python -m grafana.mixin --config my.yaml --out DIR   # your settings over the defaults, into DIR

The settings are deploy/mixin/config.yaml; a --config file holds only what it changes. The
generated files stay the committed, deployable artifacts at their usual paths (Prometheus,
promtool tests and the deployment manifests read them there), so the generator is needed
only to change them, never to deploy them. With --out, the rule files go to DIR/prometheus/
and the dashboards to DIR/dashboards/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana.generate import DASHBOARD_DIR, build_dashboards, render
from grafana.rules import RULES_DIR, build_rule_files
from grafana.settings import ROOT, Settings, SettingsError, load


def build(
    settings: Settings, rules_dir: Path = RULES_DIR, dashboard_dir: Path = DASHBOARD_DIR
) -> dict[Path, str]:
    """Path -> text of every generated file."""
    files = {rules_dir / name: text for name, text in build_rule_files(settings).items()}
    files.update({dashboard_dir / name: render(d) for name, d in build_dashboards(settings).items()})
    return files


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    ap.add_argument("--config", type=Path, help="settings merged over deploy/mixin/config.yaml")
    ap.add_argument("--out", type=Path, help="write DIR/prometheus/*.yml and DIR/dashboards/*.json instead")
    args = ap.parse_args(argv)
    try:
        settings = load(args.config)
    except SettingsError as e:
        print(f"grafana.mixin: {e}", file=sys.stderr)
        return 2
    if args.out is None:
        files = build(settings)
    else:
        files = build(settings, args.out / "prometheus", args.out / "dashboards")
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        if stale:
            names = ", ".join(_shown(p) for p in stale)
            print(f"out of date: {names}; run python -m grafana.mixin", file=sys.stderr)
            return 1
        return 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
