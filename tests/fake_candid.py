"""``python -m tests.fake_candid --engine MODULE:FUNCTION <candid args>``: the candid CLI with a
test engine injected the way library callers inject one (``jobs.cli.main(make_engine=...)``,
pickled to the executors). User configs have no such seam."""

from __future__ import annotations

import importlib
import sys

from jobs.cli import main


def load(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--engine":
        sys.exit("usage: python -m tests.fake_candid --engine MODULE:FUNCTION <candid args>")
    sys.exit(main(sys.argv[3:], make_engine=load(sys.argv[2])))
