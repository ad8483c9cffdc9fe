"""The ``taskloom`` command line: one click group, one module per command family."""

from __future__ import annotations

from taskloom.cli.common import main
from taskloom.cli.plugins import plugins_command

main.add_command(plugins_command)

__all__ = ["main"]
