"""Launch the real CLI with the test provider registered, for out-of-process tests.

python -m tests.run_exporter --config.file x.yaml --web.listen-address 127.0.0.1:0
"""

from __future__ import annotations

import sys

from exporter.process.cli import main
from tests import fakevendor

if __name__ == "__main__":
    fakevendor.install()
    sys.exit(main(sys.argv[1:]))
