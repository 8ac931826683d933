"""`python -m exporter` is the same as the `livestream-exporter` command."""

from exporter.entry import main

raise SystemExit(main())
