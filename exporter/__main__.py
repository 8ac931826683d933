"""`python -m exporter` is the same as the `livestream-exporter` command."""

from exporter.cli import main

raise SystemExit(main())
