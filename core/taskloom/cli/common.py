"""What every CLI command shares: the root group, the consoles, the error policy and options.

The error policy: an error taskloom raises on purpose (a :class:`taskloom.errors.TaskloomError`:
an unknown name, a bad URL, a file that cannot be read, a query the pool cannot run) and a bad
option value (a click ``BadParameter``) become one ``error: ...`` line on stderr and exit code
2. Any other exception is a bug and keeps its traceback.

User data (pool names, ids, paths, task fields) is printed as rich ``Text``, never as markup,
so ``[red]x[/]`` in a pool name is shown as typed.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from taskloom import __version__
from taskloom.errors import TaskloomError

console = Console()
err_console = Console(stderr=True)

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print one error line and exit with the usage-error code."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(USAGE_ERROR)


def say(message: str) -> None:
    """Print one line of plain text on stdout, with no markup or emoji codes interpreted."""
    console.print(Text(message), soft_wrap=True)


def title(text: str) -> Text:
    """A table title holding user data: shown as typed, in rich's usual title style."""
    return Text(text, style="table.title")


class TaskloomGroup(click.Group):
    """A click group that reports user errors as one line with exit code 2 (see the module)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaskloomError as exc:
            fail(str(exc) or type(exc).__name__)
        except click.BadParameter as exc:
            if isinstance(exc, click.MissingParameter):
                raise  # a missing argument is best explained with the usage line click prints
            fail(exc.format_message())


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
    """The ``--query`` option's JSON object; malformed text is a ``BadParameter`` quoting it."""
    if not text:
        return {}
    try:
        query = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{text!r:.80} is not valid JSON ({exc})",
                                 param_hint="'--query'") from None
    except RecursionError:  # the JSON decoder recurses once per nested array or object
        raise click.BadParameter("the JSON nests too deeply to be a query",
                                 param_hint="'--query'") from None
    if not isinstance(query, dict):
        raise click.BadParameter(f"{text!r:.80} is not a JSON object",
                                 param_hint="'--query'")
    return query
