"""``taskloom plugins``: which plugins loaded, what each contributes, and which failed."""

from __future__ import annotations

import click
from rich.table import Table

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
        style = _STATUS_STYLE.get(info.status, "")
        status = f"[{style}]{info.status}[/]" if style else info.status
        if info.error:
            status += f": {info.error}"
        table.add_row(
            info.name,
            "\n".join(contributed.get(info.name, [])) or "-",
            info.distribution or "-",
            info.version or "-",
            status,
        )
    console.print(table)
