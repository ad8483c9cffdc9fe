"""``taskloom demo``: a complete rolling study on a synthetic market, with no server.

    taskloom demo [--dir DIR] [--workers N] [--size small|full]
    taskloom demo --write-workflow FILE

It runs the workflow file shipped in :mod:`taskloom.demo` as ``taskloom run`` would, in DIR
(the data, the SQLite pool, MLflow's store and the outputs all land there), then prints the
per-model summary and where everything is. ``--write-workflow`` copies the file out instead,
to edit and run with ``taskloom run``. Heavy modules are imported inside the command.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click
from rich.text import Text

from taskloom.cli.common import console, err_console, say
from taskloom.errors import InputError

#: where the demo runs unless --dir says otherwise
DEFAULT_DIR = "taskloom-demo"


@click.command("demo")
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The folder the demo runs in; everything it writes lands there.")
@click.option("--workers", "-w", type=click.IntRange(1),
              help="Local worker processes (default: the workflow's, 2).")
@click.option("--size", type=click.Choice(["full", "small"]), default="full", show_default=True,
              help="small: fewer instruments and windows, for a quick look (and the tests).")
@click.option("--write-workflow", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Copy the demo's workflow file to FILE and stop.")
def demo_command(directory: Path, workers: int | None, size: str,
                 write_workflow: Path | None) -> None:
    """Run the packaged rolling study: synthetic market, three models, quarterly retrains.

    Running it again in the same folder retrains nothing: every window is already done.
    """
    from taskloom.demo import SMALL_MARKET, WORKFLOW

    if write_workflow is not None:
        if write_workflow.exists():
            raise InputError(f"--write-workflow {write_workflow}: the file exists; "
                             "remove it or choose another name")
        try:
            shutil.copyfile(WORKFLOW, write_workflow)
        except OSError as exc:
            raise InputError(f"--write-workflow {write_workflow}: cannot write it "
                             f"({exc.strerror})") from None
        say(f"wrote {write_workflow}; edit it, then run it with: taskloom run {write_workflow}")
        return

    from taskloom import report, study
    from taskloom.cli.run import INTERRUPTED, TrainingDisplay
    from taskloom.workflow import load_workflow

    directory.mkdir(parents=True, exist_ok=True)
    os.chdir(directory)
    here = Path.cwd()
    wf = load_workflow(WORKFLOW)
    wf.experiment.tracking_uri = f"sqlite:///{here / 'mlflow.db'}"  # the demo keeps to DIR
    if size == "small":
        wf.prepare[0].kwargs.update(SMALL_MARKET)
    say(f"taskloom demo: a rolling study in {here} (workflow {WORKFLOW.name}, size {size})")
    try:
        with TrainingDisplay() as display:
            result = study.run(wf, workers=workers, progress=display,
                               report=lambda line: display.progress.console.print(Text(line)))
    except KeyboardInterrupt:
        err_console.print("interrupted: run the same command again to finish the study; "
                          "windows already trained are kept")
        sys.exit(INTERRUPTED)
    outputs = wf.outputs_dir
    console.print(report.summary_table(result.summary.table))
    say("where everything is:")
    for what, path in (
        ("market data", here / "data" / "market.parquet"),
        ("task pool (SQLite)", here / "taskloom.db"),
        ("MLflow runs", here / "mlflow.db"),
        ("MLflow artifacts", here / "mlruns"),
        ("stitched predictions", outputs / report.PREDICTIONS_FILE),
        ("daily IC", outputs / report.DAILY_IC_FILE),
        ("summary", outputs / report.SUMMARY_FILE),
        ("plot", outputs / report.PLOT_FILE),
        ("worker logs", outputs / "logs"),
    ):
        say(f"  {what + ':':22} {path}")
    say("browse the runs in the MLflow UI:")
    say(f"  cd {here} && mlflow ui --backend-store-uri sqlite:///mlflow.db")
    say("edit the study: taskloom demo --write-workflow my_study.yaml; "
        "taskloom run my_study.yaml")
