"""``taskloom plugins``: which plugins loaded, what each contributes, and which failed."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from taskloom import list_plugins, registry
from taskloom.cli.common import console

_STATUS_STYLE = {"loaded": "green", "failed": "bold red", "blocked": "yellow", "in-process": "cyan"}


@click.command("plugins")
def plugins_command() -> None:
    """List plugins: name, contributions, distribution and version, status."""
    contributed = registry.contributions_by_plugin()
    table = Table(title="taskloom plugins")
    for column in ("name", "contributes", "distribution", "version", "status"):
        table.add_column(column)
    for info in list_plugins():
        status = Text(info.status, style=_STATUS_STYLE.get(info.status, ""))
        if info.error:
            status.append(f": {info.error}")
        table.add_row(
            Text(info.name),
            Text("\n".join(contributed.get(info.name, [])) or "-"),
            Text(info.distribution or "-"),
            Text(info.version or "-"),
            status,
        )
    console.print(table)
