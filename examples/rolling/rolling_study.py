"""The demo study through the Python API, step by step, as qlib's ``task_manager_rolling.py``.

qlib's example resets the experiment and the pool, generates rolling tasks from templates,
trains them with ``TrainerRM`` (this process and any ``worker()`` processes share a MongoDB
pool), and collects the recorders with ``RecorderCollector`` and ``RollingGroup``. This script
does the same with taskloom's classes, on the embedded defaults: a SQLite pool and MLflow's
SQLite store in the working directory. The templates and the market come from the demo's
workflow file (``rolling_demo.yaml`` beside this script), so both describe one study.

    python examples/rolling/rolling_study.py            # reset, generate, train, collect
    python examples/rolling/rolling_study.py worker     # in other terminals, while it trains

``--size small`` uses the demo's reduced market (``taskloom demo --size small``).

``taskloom run examples/rolling/rolling_demo.yaml`` does all of it in one command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import taskloom
from mlflow.tracking import MlflowClient
from taskloom.demo import SMALL_MARKET
from taskloom.report import summary_table, write_outputs
from taskloom.study import prepare
from taskloom.workflow import load_workflow

WORKFLOW = Path(__file__).resolve().with_name("rolling_demo.yaml")
EXPERIMENT = "rolling_example"
POOL = "rolling_example"
STORAGE = "sqlite:///taskloom.db"
TRACKING_URI = "sqlite:///mlflow.db"


class RollingStudy:
    """qlib's ``RollingTaskExample``: one method per step of the study."""

    def __init__(self, step: int = 63, size: str = "full") -> None:
        self.workflow = load_workflow(WORKFLOW)
        if size == "small":
            self.workflow.prepare[0].kwargs.update(SMALL_MARKET)
        self.step = step
        self.trainer = taskloom.TrainerRM(EXPERIMENT, POOL, storage=STORAGE,
                                          tracking_uri=TRACKING_URI)

    def reset(self) -> None:
        """Empty the task pool and delete the experiment's runs, as qlib's ``reset()`` does."""
        manager = taskloom.TaskManager(POOL, STORAGE)
        print(f"reset: {manager.remove()} tasks removed from pool {POOL!r}")
        client = MlflowClient(tracking_uri=TRACKING_URI)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            runs = client.search_runs([experiment.experiment_id], max_results=10_000)
            for run in runs:
                client.delete_run(run.info.run_id)
            print(f"reset: {len(runs)} runs of experiment {EXPERIMENT!r} deleted")

    def task_generating(self) -> list[dict]:
        """The rolling tasks: every template shifted quarter by quarter over the market."""
        prepare(self.workflow)  # writes data/market.parquet and data/calendar.txt once
        calendar = taskloom.TradingCalendar.from_file("data/calendar.txt")
        rolling = taskloom.get_generator("rolling")(step=self.step, rtype="sliding",
                                                    calendar=calendar)
        templates = [template.as_task() for template in self.workflow.templates]
        tasks = taskloom.task_generator(templates, rolling)
        print(f"generated {len(tasks)} tasks from {len(templates)} templates")
        return tasks

    def task_training(self, tasks: list[dict]) -> None:
        """Put the tasks in the pool and train them here, with any workers that join."""
        references = self.trainer.train(tasks)
        print(f"trained: {len(references)} runs in experiment {EXPERIMENT!r}")

    def worker(self) -> None:
        """Train waiting tasks of the pool until none is left (run it in other processes)."""
        self.trainer.worker()

    def task_collecting(self, tasks: list[dict]) -> None:
        """Collect the runs, stitch each template's windows, and write the outputs."""

        def rec_key(run):
            # the template's name and the test window, as the recorder tagged the run (an
            # open end, the last window's, has no tag)
            tags = run.data.tags
            window = (tags["taskloom.segment.test.start"], tags.get("taskloom.segment.test.end"))
            return tags["template"], window

        collector = taskloom.get_collector("recorder")(
            EXPERIMENT,
            process_list=taskloom.get_processor("rolling_group")(),
            rec_key_func=rec_key,
            artifacts_path={"pred": "pred.parquet", "label": "label.parquet"},
            tracking_uri=TRACKING_URI,
        )
        collected = collector()
        windows: dict[str, list] = {}
        for task in tasks:
            windows.setdefault(task["tags"]["template"], []).append(
                task["dataset"]["kwargs"]["segments"]["test"])
        keys = [(template.label,) for template in self.workflow.templates]  # the file's order
        summary = write_outputs({key: collected["pred"][key] for key in keys},
                                collected["label"], windows, "outputs")
        from rich.console import Console

        Console().print(summary_table(summary.table))
        print(f"outputs in {summary.directory}; the plot is {summary.plot}")

    def main(self) -> None:
        """reset -> generate -> train -> collect, as qlib's example runs them."""
        self.reset()
        tasks = self.task_generating()
        self.task_training(tasks)
        self.task_collecting(tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["main", "worker"], default="main")
    parser.add_argument("--size", choices=["full", "small"], default="full")
    args = parser.parse_args()
    study = RollingStudy(size=args.size)
    if args.command == "worker":
        study.worker()
    else:
        study.main()
