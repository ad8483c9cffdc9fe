"""The ``taskloom`` command line: one click group, one module per command family."""

from __future__ import annotations

from taskloom.cli.common import main
from taskloom.cli.generate import generate_command
from taskloom.cli.plugins import plugins_command
from taskloom.cli.pool import POOL_COMMANDS
from taskloom.cli.run import RUN_COMMANDS
from taskloom.cli.worker import worker_command

main.add_command(plugins_command)
main.add_command(generate_command)
main.add_command(worker_command)
for _command in (*POOL_COMMANDS, *RUN_COMMANDS):
    main.add_command(_command)

__all__ = ["main"]
