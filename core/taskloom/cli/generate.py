"""``taskloom generate``: expand a task template with a registered generator.

    taskloom generate TEMPLATE.yaml --generator rolling --param step=20 --param rtype=sliding \\
        (--calendar FILE | --exchange XSHG) [-o tasks.jsonl] [--pool NAME [--storage URL]]

The template is YAML or JSON: one task mapping, a list of them, or a qlib workflow config
whose ``task:`` entry is the task. ``--param KEY=VALUE`` values are read as YAML scalars or
lists (``20`` is an int, ``null`` is None, ``[1, 5]`` a list). A table shows the segments of
every generated task; ``-o`` also writes the tasks as JSON lines, and ``--pool`` submits them
to a task pool (duplicates of tasks already there are not added again).

A failure leaves nothing behind: the files and the generation are checked first, the output
is then staged in a hidden temporary file (see :mod:`taskloom.cli.output`), the store is opened
and the pool takes the tasks, and only then does the output file appear, in one rename.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import click
import yaml
from rich.table import Table
from rich.text import Text

from taskloom import get_generator, task_key, to_jsonable
from taskloom.cli.common import console, say, storage_option, title
from taskloom.cli.output import stage_output
from taskloom.errors import InputError, TaskloomError

OPEN = "open"


def read_text_file(path: Path, what: str) -> str:
    """The text of a file the user named, as UTF-8 (a leading byte order mark is dropped).

    A file that cannot be read or is not UTF-8 is an :class:`InputError` naming ``what`` and
    the file, e.g. ``calendar days.txt: not UTF-8 text (byte 0xe9 at offset 12)``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path}: not UTF-8 text "
                         f"(byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def load_templates(path: Path) -> list[dict[str, Any]]:
    """The task templates in a YAML or JSON file; an InputError names the file and the field."""
    text = read_text_file(path, "template")
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"template {path}: not valid {'JSON' if is_json else 'YAML'}: "
                         f"{' '.join(str(exc).split())}") from None
    if isinstance(data, dict) and "task" in data and "dataset" not in data:
        data = data["task"]  # a qlib workflow config: the task is under "task"
    templates = data if isinstance(data, list) else [data]
    for position, template in enumerate(templates):
        if not isinstance(template, dict):
            where = f"[{position}]" if isinstance(data, list) else "top level"
            raise InputError(f"template {path}: {where} must be a task mapping, "
                             f"got {type(template).__name__}")
        for key in template:
            if not isinstance(key, str):
                raise InputError(f"template {path}: field {key!r} must be named by a string")
    return templates


def parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict, each value read as YAML; else a ``BadParameter``."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. step=20",
                                     param_hint="'--param'")
        try:
            params[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise click.BadParameter(f"{key}: cannot read the value {raw!r} as YAML",
                                     param_hint="'--param'") from None
    return params


def _build_generator(name: str, params: dict[str, Any], calendar_file: Path | None,
                     exchange: str | None) -> Any:
    cls = get_generator(name)
    signature = inspect.signature(cls)
    accepted = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = [key for key in params if key not in accepted and not takes_any]
    if unknown:
        raise InputError(f"generator {name!r} has no parameter {unknown[0]!r}; "
                         f"it takes {', '.join(accepted) or 'none'}")
    if "calendar" in accepted and "calendar" not in params:
        from taskloom.calendar import TradingCalendar

        if calendar_file is not None:
            read_text_file(calendar_file, "calendar")  # names the file if it is unreadable
            params["calendar"] = TradingCalendar.from_file(calendar_file)
        elif exchange is not None:
            params["calendar"] = TradingCalendar.from_exchange(exchange)
        elif accepted["calendar"].default is inspect.Parameter.empty:
            raise InputError(f"generator {name!r} needs a trading calendar: "
                             "pass --calendar FILE or --exchange CODE")
    return cls(**params)


def _bounds_text(segment: Any) -> str:
    if not isinstance(segment, list | tuple) or len(segment) != 2:
        return str(segment)
    start, end = (OPEN if bound is None else str(to_jsonable(bound)) for bound in segment)
    return f"{start} .. {end}"


def _dig(task: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(task, dict) or key not in task:
            return None
        task = task[key]
    return task


def windows_table(tasks: list[dict[str, Any]], segments_path: tuple[str, ...], heading: str
                  ) -> Table:
    """One row per task: each segment as ``start .. end`` and the handler end time if any."""
    keys: list[str] = []
    for task in tasks:
        segments = _dig(task, segments_path)
        for key in segments if isinstance(segments, dict) else ():
            if key not in keys:
                keys.append(key)
    handler_end = ("dataset", "kwargs", "handler", "kwargs", "end_time")
    show_end = any(isinstance(_dig(task, handler_end[:-1]), dict)
                   and "end_time" in _dig(task, handler_end[:-1]) for task in tasks)
    table = Table(title=title(heading))
    table.add_column("#", justify="right")
    for key in keys:
        table.add_column(Text(key))
    if show_end:
        table.add_column("handler end_time")
    for number, task in enumerate(tasks):
        segments = _dig(task, segments_path) or {}
        row = [str(number)]
        row += [_bounds_text(segments[key]) if key in segments else "-" for key in keys]
        if show_end:
            end = _dig(task, handler_end)
            row.append(OPEN if end is None else str(to_jsonable(end)))
        table.add_row(*(Text(cell) for cell in row))  # template data, never markup
    return table


@click.command("generate")
@click.argument("template", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--generator", "-g", "generator_name", required=True,
              help="Registered generator name, e.g. rolling or multi_horizon.")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A generator parameter (repeatable); the value is read as YAML.")
@click.option("--calendar", "calendar_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Trading calendar file, one date per line.")
@click.option("--exchange", metavar="CODE",
              help="Exchange calendar code (needs taskloom[calendars]), e.g. XSHG.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the tasks to this file as JSON lines.")
@click.option("--pool", help="Also submit the tasks to this task pool.")
@storage_option
def generate_command(template: Path, generator_name: str, params: tuple[str, ...],
                     calendar_file: Path | None, exchange: str | None,
                     output: Path | None, pool: str | None, storage: str | None) -> None:
    """Expand TEMPLATE (YAML or JSON) with a generator and show the windows."""
    from taskloom.generation import DEFAULT_SEGMENTS_PATH, task_generator

    if calendar_file is not None and exchange is not None:
        raise InputError("give --calendar or --exchange, not both")
    templates = load_templates(template)
    generator = _build_generator(generator_name, parse_params(params), calendar_file, exchange)
    tasks = []
    for position, task in enumerate(templates):
        where = f"template {template}" + (f" [{position}]" if len(templates) > 1 else "")
        try:
            tasks += task_generator(task, generator)
        except TaskloomError as exc:
            raise InputError(f"{where}: {exc}") from None
    segments_path = getattr(generator, "segments_path", DEFAULT_SEGMENTS_PATH)
    heading = f"{len(tasks)} tasks from {template.name} ({generator_name})"
    console.print(windows_table(tasks, tuple(segments_path), heading))
    text = "".join(json.dumps(to_jsonable(task), ensure_ascii=False) + "\n" for task in tasks)
    staged = stage_output(output, text) if output is not None else None
    try:
        if pool is not None:
            _submit(tasks, pool, storage)
        if staged is not None:
            staged.commit()
            say(f"wrote {len(tasks)} tasks to {output}")
    finally:
        if staged is not None:
            staged.discard()


def _submit(tasks: list[dict[str, Any]], pool: str, storage: str | None) -> None:
    """Add the tasks not yet in the pool (creating store and pool if needed) and say how many."""
    from taskloom.manager import TaskManager
    from taskloom.stores import get_storage

    store = get_storage(storage)
    if not store.shared_across_processes:
        raise click.BadParameter(
            f"{store.url} lives only as long as this command, so the tasks would vanish when "
            "it exits; submit them to a store that outlives it (sqlite:///FILE, mongodb://...)",
            param_hint="'--storage'")
    manager = TaskManager(pool, store)
    keys = {task_key(task) for task in tasks}
    already = len(manager.pool.ids_for_keys(sorted(keys)))
    manager.create_task(tasks)
    say(f"submitted {len(keys)} tasks to pool {pool!r} ({store.url}): "
        f"{len(keys) - already} new, {already} already there")
