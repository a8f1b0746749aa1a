"""``candid eval ...`` and ``candid audit``: the honesty measurements (issue 13). Registered into
the main parser by ``jobs.cli``."""

from __future__ import annotations

import argparse

from jobs.commands import Handler

# Subcommand name -> handler, merged into jobs.cli's table.
EVAL_COMMANDS: dict[str, Handler] = {}


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Add the eval subcommands to the main parser's subparsers."""
