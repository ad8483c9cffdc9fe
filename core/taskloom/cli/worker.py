"""The ``worker`` command: run a pool's tasks with a handler in one or more processes."""

from __future__ import annotations

import logging
import sys

import click

from taskloom.cli.common import parse_query, query_option, storage_option
from taskloom.retry import RetryPolicy
from taskloom.status import DONE, check_after_status
from taskloom.worker import DEFAULT_WORKER_LEASE_SECONDS, WorkerConfig, check_config, serve


def _after_status(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--after-status``: a status a run may end in (done, part_done or a custom one)."""
    try:
        return check_after_status(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@click.command("worker")
@click.argument("pool")
@storage_option
@click.option("--handler", required=True, metavar="NAME|module:function",
              help="A registered handler (see `taskloom plugins`) or an import path.")
@click.option("-c", "--concurrency", default=1, show_default=True, type=click.IntRange(1),
              help="Worker processes.")
@click.option("--max-tasks", type=click.IntRange(1),
              help="Exit after this many attempts (per process; a retried task counts again).")
@click.option("--idle-exit", type=click.FloatRange(0), metavar="SECONDS",
              help="Exit after this long without a claimable task (default: keep polling).")
@click.option("--lease", "lease_seconds", default=DEFAULT_WORKER_LEASE_SECONDS, show_default=True,
              type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Lease length; renewed every third of it while a task runs.")
@click.option("--max-attempts", default=RetryPolicy().max_attempts, show_default=True,
              type=click.IntRange(1), help="Failed attempts before a task is marked failed.")
@click.option("--backoff", "backoff_seconds", default=RetryPolicy().backoff_seconds,
              show_default=True, type=click.FloatRange(0), metavar="SECONDS",
              help="Wait after the first failure; doubles with each further one.")
@click.option("--stop-on-error", is_flag=True,
              help="qlib's behaviour: put the failing task back and stop this worker.")
@query_option
@click.option("--before-status", type=click.Choice(["waiting", "part_done"]), default="waiting",
              show_default=True, help="Run tasks in this status (part_done: the handler gets res).")
@click.option("--after-status", default=DONE, show_default=True, callback=_after_status,
              help="Status of a committed task: done, part_done or a custom one "
                   "(not waiting, running, failed or cancelled).")
@click.option("--init", "initializer", metavar="module:function",
              help="Run this function once in each worker process before its first task "
                   "(e.g. one that calls qlib.init()).")
@click.option("--record", metavar="EXPERIMENT",
              help="Record each task as a run of this experiment; the task's result is then "
                   "a reference to the run.")
@click.option("--recorder", default="mlflow", show_default=True, metavar="NAME",
              help="The registered recorder --record uses (see `taskloom plugins`).")
@click.option("--tracking-uri", metavar="URI",
              help="The recorder's tracking store (default: MLFLOW_TRACKING_URI, else "
                   "mlflow.db and mlruns/ in the working directory).")
def worker_command(pool: str, storage: str | None, handler: str, concurrency: int,
                   max_tasks: int | None, idle_exit: float | None, lease_seconds: float,
                   max_attempts: int, backoff_seconds: float, stop_on_error: bool,
                   query_text: str | None, before_status: str, after_status: str,
                   initializer: str | None, record: str | None, recorder: str,
                   tracking_uri: str | None) -> None:
    """Run tasks of POOL: claim, run the handler, commit, in N processes.

    With --record, each task runs inside a recorded run (MLflow by default) and its result
    is a reference to that run. SIGTERM or SIGINT: the running task is given back at once,
    then the worker exits 0.
    """
    config = WorkerConfig(
        pool=pool, storage=storage, handler=handler, concurrency=concurrency,
        max_tasks=max_tasks, idle_exit=idle_exit, lease_seconds=lease_seconds,
        query=parse_query(query_text), before_status=before_status, after_status=after_status,
        stop_on_error=stop_on_error, initializer=initializer, record=record,
        recorder=recorder, tracking_uri=tracking_uri,
        retry_policy=RetryPolicy(max_attempts=max_attempts, backoff_seconds=backoff_seconds),
    )
    check_config(config)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    sys.exit(serve(config))
