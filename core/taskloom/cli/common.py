"""What every CLI command shares: the root group, the console, and the error policy.

Bad input (an unknown name, a malformed URL or template, a query the pool cannot run) is a
:class:`taskloom.errors.TaskloomError` or a ``ValueError``; the root group turns it into one
``error: ...`` line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from taskloom import __version__
from taskloom.errors import TaskloomError

console = Console()
err_console = Console(stderr=True)

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print one error line and exit with the usage-error code."""
    err_console.print("[bold red]error:[/]", escape(message), highlight=False, soft_wrap=True)
    sys.exit(USAGE_ERROR)


class TaskloomGroup(click.Group):
    """A click group that reports expected errors as one line with exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (TaskloomError, ValueError, LookupError, OSError) as exc:
            fail(str(exc) or type(exc).__name__)


#: ``--storage URL``: the store a command works on, shared by every command that needs one
storage_option = click.option(
    "--storage", envvar="TASKLOOM_STORAGE", metavar="URL",
    help="Store URL (memory://, sqlite:///path.db, mongodb://...); "
         "default: TASKLOOM_STORAGE or sqlite:///taskloom.db.",
)


@click.group(cls=TaskloomGroup)
@click.version_option(__version__, prog_name="taskloom")
def main() -> None:
    """taskloom: generate, pool, run and collect model-iteration tasks."""


query_option = click.option("--query", "query_text", metavar="JSON",
                            help='A pool query, e.g. \'{"model.class": "LGBModel"}\'.')


def parse_query(text: str | None) -> dict[str, Any]:
    """The ``--query`` option's JSON object; malformed text is a ValueError naming it."""
    if not text:
        return {}
    try:
        query = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--query is not valid JSON ({exc})") from exc
    if not isinstance(query, dict):
        raise ValueError(f"--query must be a JSON object, got {text!r}")
    return query
