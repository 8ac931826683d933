"""`python -m exporter` is the same as the `livestream-exporter` command."""

from exporter.process.entry import main

raise SystemExit(main())
