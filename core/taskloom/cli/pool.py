"""The pool commands: ``status``, ``ls``, ``show``, ``retry``, ``cancel``, ``reap``,
``wait``, ``remove``, ``prioritize`` and ``pools``.

Every command takes ``--storage URL`` (default: ``TASKLOOM_STORAGE`` or
``sqlite:///taskloom.db``). They read or change existing pools and never create a store or a
pool: an unknown pool or store, like a bad URL, an unknown task id or a bad option value, is
one ``error:`` line and exit code 2, and nothing is changed.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.json import JSON
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from taskloom.cli.common import (
    console,
    err_console,
    parse_query,
    query_option,
    say,
    storage_option,
    title,
)
from taskloom.errors import UnknownTaskError
from taskloom.manager import TaskManager
from taskloom.query import INT64_MAX, INT64_MIN
from taskloom.storage import CANCELLED, DONE, FAILED, RUNNING, STATUSES, UNDONE
from taskloom.stores import get_storage

_STATUS_STYLE = {"waiting": "cyan", "running": "yellow", "part_done": "blue", "done": "green",
                 "failed": "bold red", "cancelled": "dim"}
#: window over which ``status`` measures throughput
THROUGHPUT_WINDOW = 60.0

#: ``--status STATUS`` (repeatable): a status name; anything else is a bad option value
status_option = click.option(
    "--status", "statuses", multiple=True, type=click.Choice([status.value for status in STATUSES]),
    help="Only tasks in this status (repeatable).",
)


def _manager(pool: str, storage: str | None) -> TaskManager:
    """The existing pool POOL of the existing store ``--storage`` names (neither is created)."""
    return TaskManager(pool, storage, create=False)


def _check_ids(tm: TaskManager, ids: Sequence[str]) -> None:
    """Refuse IDs the pool does not hold, naming them, before anything is changed."""
    unknown = [task_id for task_id in dict.fromkeys(ids) if tm.pool.get(task_id) is None]
    if unknown:
        listing = ", ".join(repr(task_id) for task_id in unknown)
        noun = "id" if len(unknown) == 1 else "ids"
        raise UnknownTaskError(f"no task with {noun} {listing} in pool {tm.task_pool!r}")


def _selection(ids: Sequence[str], query_text: str | None,
               statuses: Sequence[str] = ()) -> dict[str, Any]:
    """The query that IDS, ``--query`` and ``--status`` options select together."""
    parts: list[dict[str, Any]] = []
    if ids:
        parts.append({"_id": {"$in": list(ids)}})
    if query_text:
        parts.append(parse_query(query_text))
    if statuses:
        parts.append({"status": {"$in": list(statuses)}})
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _ordered(stat: Mapping[str, int]) -> list[tuple[str, int]]:
    known = [(status, stat[status]) for status in STATUSES if stat.get(status)]
    return known + sorted((s, n) for s, n in stat.items() if s not in STATUSES and n)


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _short_json(value: Any, width: int = 70) -> Text:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Text(text if len(text) <= width else text[: width - 1] + "…")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _pool_table(heading: str, rows: list[tuple[str, dict[str, int]]]) -> Table:
    table = Table(title=title(heading))
    table.add_column("pool")
    table.add_column("total", justify="right")
    for status in STATUSES:
        table.add_column(status, justify="right", style=_STATUS_STYLE[status])
    for name, stat in rows:
        table.add_row(Text(name), str(sum(stat.values())),
                      *(str(stat.get(status, 0)) for status in STATUSES))
    return table


def _print_pools(storage: str | None) -> None:
    store = get_storage(storage, create=False)  # opened once for every pool listed
    rows = [(name, TaskManager(name, store, create=False).task_stat())
            for name in TaskManager.list(store)]
    console.print(_pool_table("taskloom pools", rows))


@click.command("pools")
@storage_option
def pools_command(storage: str | None) -> None:
    """List the pools of the store with their task counts."""
    _print_pools(storage)


@click.command("status")
@click.argument("pool", required=False)
@storage_option
def status_command(pool: str | None, storage: str | None) -> None:
    """Counts per status, progress and throughput of POOL (all pools without POOL)."""
    if pool is None:
        _print_pools(storage)
        return
    tm = _manager(pool, storage)
    stat = tm.task_stat()
    total = sum(stat.values())
    table = Table(title=title(f"pool {pool}"))
    table.add_column("status")
    table.add_column("tasks", justify="right")
    table.add_column("share", justify="right")
    for status, n in _ordered(stat):
        table.add_row(_status_text(status), str(n), f"{100 * n / total:.1f}%")
    now = time.time()
    finished = total - sum(stat.get(status, 0) for status in UNDONE)
    recent = sum(tm.task_stat({"status": DONE, "updated_at": {"$gte": now - THROUGHPUT_WINDOW}})
                 .values())
    stale = sum(tm.task_stat({"status": RUNNING, "lease.until": {"$lt": now}}).values())
    summary = Table.grid(padding=(0, 2))
    if total:
        # "finished" is not "succeeded": say how many of the finished tasks are done or failed
        outcomes = ", ".join(f"{stat.get(status, 0)} {status}" for status in STATUSES
                             if status not in UNDONE and (stat.get(status) or status == DONE))
        summary.add_row("finished", f"{finished}/{total} ({100 * finished / total:.1f}%): "
                                    f"{outcomes}")
        summary.add_row("", ProgressBar(total=total, completed=finished, width=40))
    first = next(tm.pool.find({}, limit=1), None)
    # a pool younger than the window is measured over its own age, not the whole window
    span = min(THROUGHPUT_WINDOW, now - first["created_at"]) if first else THROUGHPUT_WINDOW
    summary.add_row("throughput", f"{recent / max(span, 1e-9):.2f} tasks/s "
                                  f"({recent} done in the last {span:.0f} s)")
    if stale:
        summary.add_row("expired leases", Text(f"{stale} (claimed again by the next worker, "
                                               "or now by `taskloom reap`)", style="yellow"))
    console.print(table, summary)


@click.command("ls")
@click.argument("pool")
@storage_option
@status_option
@query_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0),
              help="At most this many tasks (0: all).")
def ls_command(pool: str, storage: str | None, statuses: tuple[str, ...],
               query_text: str | None, limit: int) -> None:
    """List tasks of POOL in creation order."""
    tm = _manager(pool, storage)
    query = _selection((), query_text, statuses)
    table = Table(title=title(f"pool {pool}"))
    for column in ("id", "status", "priority", "attempt", "updated", "task", "result / error"):
        wide = column in ("task", "result / error")
        table.add_column(column, overflow="ellipsis", no_wrap=not wide,
                         max_width=32 if wide else None)
    shown = 0
    for task in tm.pool.find(query, limit=limit or None):
        error = task.get("error")
        outcome = (Text(f"{error['type']}: {error['message']}", style="red") if error
                   else _short_json(task["res"], width=50) if task.get("res") is not None
                   else Text(""))
        table.add_row(Text(task["_id"]), _status_text(task["status"]), str(task["priority"]),
                      str(task["attempt"]), _when(task.get("updated_at")),
                      _short_json(task["def"], width=40), outcome)
        shown += 1
    console.print(table)
    total = sum(tm.task_stat(query).values())
    if shown < total:
        say(f"{shown} of {total} tasks shown (--limit)")


@click.command("show")
@click.argument("pool")
@click.argument("task_id", metavar="ID")
@storage_option
def show_command(pool: str, task_id: str, storage: str | None) -> None:
    """One task of POOL: definition, result, lease, attempt history and traceback."""
    task = _manager(pool, storage).re_query(task_id)
    head = Table.grid(padding=(0, 2))
    head.add_row("id", Text(task["_id"]))
    head.add_row("status", _status_text(task["status"]))
    head.add_row("priority", str(task["priority"]))
    head.add_row("attempt", str(task["attempt"]))
    head.add_row("created", _when(task.get("created_at")))
    head.add_row("updated", _when(task.get("updated_at")))
    if task.get("not_before"):
        head.add_row("not before", _when(task["not_before"]))
    lease = task.get("lease")
    if lease:
        head.add_row("lease", Text(f"{lease['owner']} until {_when(lease['until'])} "
                                   f"(fetched from {lease['from_status']})"))
    console.print(head)
    console.print(Panel(JSON.from_data(task["def"]), title="task", title_align="left"))
    if task.get("res") is not None:
        console.print(Panel(JSON.from_data(task["res"]), title="result", title_align="left"))
    if task.get("attempts"):
        history = Table(title="attempts")
        for column in ("attempt", "owner", "started", "ended", "seconds", "outcome", "error"):
            history.add_column(column)
        for entry in task["attempts"]:
            started, ended = entry.get("started"), entry.get("ended")
            seconds = f"{ended - started:.2f}" if started is not None and ended is not None else "-"
            error = entry.get("error") or {}
            history.add_row(str(entry.get("attempt", "-")), Text(str(entry.get("owner") or "-")),
                            _when(started), _when(ended), seconds,
                            Text(str(entry.get("outcome", "-"))), Text(error.get("type", "")))
        console.print(history)
    error = task.get("error")
    if error:
        console.print(Panel(Text(error.get("traceback") or error.get("message", "")),
                            title=Text(f"{error.get('type')}: {error.get('message')}"),
                            title_align="left", border_style="red"))


# --------------------------------------------------------------------------------------------
# changing
# --------------------------------------------------------------------------------------------


def _confirm_everything(what: str, yes: bool) -> None:
    if not yes and not click.confirm(what, err=True):
        err_console.print("aborted; nothing changed")
        sys.exit(1)


@click.command("retry")
@click.argument("pool")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@storage_option
@query_option
def retry_command(pool: str, ids: tuple[str, ...], storage: str | None,
                  query_text: str | None) -> None:
    """Put failed tasks of POOL back to waiting with fresh attempts (all failed ones by default)."""
    tm = _manager(pool, storage)
    query = _selection(ids, query_text)
    _check_ids(tm, ids)
    say(f"retried {tm.retry(query)} failed tasks")


@click.command("cancel")
@click.argument("pool")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@storage_option
@query_option
@click.option("--yes", is_flag=True, help="Do not ask before cancelling every unfinished task.")
def cancel_command(pool: str, ids: tuple[str, ...], storage: str | None,
                   query_text: str | None, yes: bool) -> None:
    """Cancel waiting, part_done and running tasks of POOL (a running task's result is rejected)."""
    tm = _manager(pool, storage)
    query = _selection(ids, query_text)
    _check_ids(tm, ids)
    if not query:
        _confirm_everything(f"cancel every unfinished task of pool {pool!r}?", yes)
    say(f"cancelled {tm.cancel(query)} tasks")


@click.command("reap")
@click.argument("pool")
@storage_option
def reap_command(pool: str, storage: str | None) -> None:
    """Release expired leases of POOL now: back to their status, or failed when out of attempts."""
    out = _manager(pool, storage).reap()
    say(f"requeued {out['requeued']}, failed {out['failed']} tasks with expired leases")


@click.command("wait")
@click.argument("pool")
@storage_option
@query_option
@click.option("--timeout", type=click.FloatRange(0), metavar="SECONDS",
              help="Give up (exit 1) after this long.")
@click.option("--poll", "poll_seconds", default=2.0, show_default=True,
              type=click.FloatRange(0, min_open=True), metavar="SECONDS")
def wait_command(pool: str, storage: str | None, query_text: str | None,
                 timeout: float | None, poll_seconds: float) -> None:
    """Block until no task of POOL is waiting, running or part_done."""
    from rich.progress import Progress

    tm = _manager(pool, storage)
    with Progress(console=err_console, disable=not err_console.is_terminal) as progress:
        bar = progress.add_task(escape(pool), total=None)

        def show(stat: Mapping[str, int]) -> None:
            total = sum(stat.values())
            undone = sum(stat.get(status, 0) for status in UNDONE)
            progress.update(bar, total=total, completed=total - undone)

        try:
            stat = tm.wait(parse_query(query_text), timeout=timeout, poll_seconds=poll_seconds,
                           progress=show)
        except TimeoutError as exc:
            progress.stop()
            err_console.print("[bold red]timeout:[/]", escape(str(exc)), highlight=False)
            sys.exit(1)
    summary = ", ".join(f"{n} {status}" for status, n in _ordered(stat))
    say(f"nothing left to do: {summary or 'no tasks'}")
    if stat.get(FAILED) or stat.get(CANCELLED):
        say(f"see `taskloom ls {pool} --status failed` for the failures")


@click.command("remove")
@click.argument("pool")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@storage_option
@query_option
@status_option
@click.option("--yes", is_flag=True, help="Do not ask before removing every task.")
def remove_command(pool: str, ids: tuple[str, ...], storage: str | None,
                   query_text: str | None, statuses: tuple[str, ...], yes: bool) -> None:
    """Delete tasks of POOL; without IDs, --query or --status, asks before deleting all."""
    tm = _manager(pool, storage)
    query = _selection(ids, query_text, statuses)
    _check_ids(tm, ids)
    if not query:
        total = sum(tm.task_stat().values())
        _confirm_everything(f"remove all {total} tasks of pool {pool!r}?", yes)
    say(f"removed {tm.remove(query)} tasks")


@click.command("prioritize", context_settings={"ignore_unknown_options": True})
@click.argument("pool")
@click.argument("task_id", metavar="ID")
@click.argument("priority", type=click.IntRange(INT64_MIN, INT64_MAX))
@storage_option
def prioritize_command(pool: str, task_id: str, priority: int, storage: str | None) -> None:
    """Set the priority of task ID (higher runs first; negative values run last)."""
    _manager(pool, storage).prioritize(task_id, priority)
    say(f"task {task_id}: priority {priority}")


POOL_COMMANDS: tuple[click.Command, ...] = (
    status_command, ls_command, show_command, retry_command, cancel_command,
    reap_command, wait_command, remove_command, prioritize_command, pools_command,
)
