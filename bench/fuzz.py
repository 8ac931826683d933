"""The fuzz tests of tests/test_fuzz.py, with many more examples and new ones on every run.

    .venv/bin/python -m bench.fuzz                          # 2,000 examples a test (about 10 minutes)
    .venv/bin/python -m bench.fuzz --examples 20000 -k cloudflare

`make test` runs the same tests with a few dozen examples each, the same ones every run;
here hypothesis draws new ones, so a long run can find what the quick one never tries.  A
failure prints the smallest answer (or configuration) that fails and a
`@reproduce_failure` line; add the input as an `@example` of its test with the fix.
"""

from __future__ import annotations

import argparse
import os
import sys

import pytest

TESTS = "tests/test_fuzz.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per test (default 2000)")
    parser.add_argument("-k", dest="keyword", help="only the tests whose name matches (pytest -k)")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    os.environ["FUZZ_EXAMPLES"] = str(args.examples)  # read by tests/test_fuzz.py when pytest imports it
    # no per-test timeout: a test runs its examples for minutes
    pytest_args = ["-q", "-p", "no:cacheprovider", "--timeout", "0", "--durations", "0", TESTS]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
