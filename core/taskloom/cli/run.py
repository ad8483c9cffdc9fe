"""``taskloom run`` / ``submit`` / ``collect``: a whole study from a workflow file, or one stage.

    taskloom run WORKFLOW.yaml [--workers N] [--reset]
    taskloom submit WORKFLOW.yaml      # prepare, generate, submit; prints the worker command
    taskloom collect WORKFLOW.yaml     # collect the recorded runs, write the outputs

``run`` trains with local worker processes under a live display (done / running / failed,
rate, ETA). ``submit`` and ``collect`` are the two ends of a scaled-out study: workers on
other machines run the printed ``taskloom worker`` command in between (``docs/scale-out.md``).
The study's modules (pydantic, pandas, MLflow) are imported inside the commands, so that
``taskloom --help`` stays fast.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from taskloom.cli.common import console, err_console, say
from taskloom.errors import TaskloomError

if TYPE_CHECKING:
    from taskloom.study import Progress, StudyResult
    from taskloom.workflow import Workflow

#: exit code after Ctrl-C or SIGTERM (the shell's 128 + SIGINT)
INTERRUPTED = 130

workflow_argument = click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))


def _load(path: Path) -> Workflow:
    """The workflow file at ``path``, validated (imports pydantic only when a command runs)."""
    from taskloom.workflow import load_workflow

    return load_workflow(path)


@contextmanager
def _masked(wf: Workflow) -> Iterator[None]:
    """Re-raise a taskloom error with the workflow's passwords masked in its message."""
    try:
        yield
    except TaskloomError as exc:
        masked = wf.mask(str(exc))
        if masked == str(exc):
            raise
        raise TaskloomError(masked) from None


def _duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class TrainingDisplay:
    """The live progress line of ``taskloom run``: a bar, counts by status, rate and ETA."""

    def __init__(self) -> None:
        """A progress bar on stderr, not started yet."""
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("training"), BarColumn(),
                                 TextColumn("{task.fields[line]}"), console=err_console,
                                 transient=False)
        self.task = self.progress.add_task("training", total=None, line="")

    def __enter__(self) -> TrainingDisplay:
        """Start drawing."""
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop drawing; the last line stays."""
        self.progress.stop()

    def __call__(self, snapshot: Progress) -> None:
        """Show one snapshot of the pool."""
        line = (f"{snapshot.done}/{snapshot.total} done, {snapshot.running} running, "
                f"{snapshot.failed} failed | {snapshot.rate * 60:.1f}/min | "
                f"ETA {_duration(snapshot.eta)}")
        self.progress.update(self.task, total=snapshot.total,
                             completed=snapshot.done + snapshot.failed, line=line)


def _summary(result: StudyResult) -> None:
    """The per-model IC summary of the stitched predictions (``taskloom demo`` prints it too)."""
    from taskloom import report

    console.print(report.summary_table(result.summary.table))


@click.command("run")
@workflow_argument
@click.option("--workers", "-w", type=click.IntRange(1),
              help="Local worker processes (default: the workflow's trainer.workers).")
@click.option("--reset", is_flag=True,
              help="First empty the pool and delete the experiment's runs (retrains all).")
def run_command(workflow: Path, workers: int | None, reset: bool) -> None:
    """Run the study WORKFLOW describes: generate, submit, train, collect, write outputs.

    Running it again finishes an interrupted study: windows already trained are skipped.
    """
    from taskloom import study

    wf = _load(workflow)
    try:
        with _masked(wf), TrainingDisplay() as display:
            result = study.run(wf, workers=workers, reset_first=reset, progress=display,
                               report=lambda line: display.progress.console.print(Text(line)))
    except KeyboardInterrupt:
        err_console.print("interrupted: tasks in progress were given back; run the same "
                          "command again to finish the study")
        sys.exit(INTERRUPTED)
    _summary(result)


@click.command("submit")
@workflow_argument
def submit_command(workflow: Path) -> None:
    """Prepare, generate and submit WORKFLOW's tasks; print the command workers run."""
    from taskloom import study
    from taskloom.workflow import mask_url

    wf = _load(workflow)
    with _masked(wf):
        study.open_store(wf)  # an unreachable store fails before any data is prepared
        study.prepare(wf)
        submitted = study.submit(wf, study.generate(wf))
    say(f"submitted {len(set(submitted.ids))} tasks to pool {wf.pool_name!r} "
        f"({mask_url(wf.storage_url)}): {submitted.new} new")
    say("train them on any machine that can reach the pool and the tracking store with:")
    stages = study.stages(wf)
    for number, stage in enumerate(stages, 1):
        if len(stages) > 1:
            say(f"stage {number} of {len(stages)}, once every task is past the one before:")
        say("  " + shlex.join(study.worker_argv(wf, masked=True, stage=stage)))
        if not stage.record:  # it resumes the runs of the stage before, in this tracking store
            say(f"  with MLFLOW_TRACKING_URI={mask_url(wf.tracking_uri)} in its environment")


@click.command("collect")
@workflow_argument
def collect_command(workflow: Path) -> None:
    """Collect WORKFLOW's recorded runs and write its outputs."""
    from taskloom import study

    wf = _load(workflow)
    with _masked(wf):
        undone = study.undone(wf)
        if undone:
            err_console.print(f"warning: {undone} tasks of pool {wf.pool_name!r} are not done "
                              "yet; collecting the finished ones")
        summary = study.write_outputs(wf, study.collect(wf))
    for path in summary.files:
        say(f"wrote {path}")


RUN_COMMANDS = (run_command, submit_command, collect_command)
