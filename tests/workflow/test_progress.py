"""The training display's numbers: counts, rate and ETA from one snapshot of the pool."""

from __future__ import annotations

from taskloom.cli.run import TrainingDisplay, _duration
from taskloom.study import Progress


def test_rate_and_eta_count_only_what_this_run_trained():
    snapshot = Progress({"done": 5, "running": 2, "waiting": 6, "failed": 1}, elapsed=6.0,
                        done_here=3)  # two windows were done before this run started
    assert (snapshot.total, snapshot.done, snapshot.running, snapshot.failed) == (14, 5, 2, 1)
    assert snapshot.remaining == 8
    assert snapshot.rate == 0.5
    assert snapshot.eta == 16.0
    assert Progress({"waiting": 4}, elapsed=3.0, done_here=0).eta is None


def test_the_display_line_shows_counts_rate_and_eta():
    display = TrainingDisplay()
    display(Progress({"done": 5, "running": 2, "waiting": 6, "failed": 1}, 6.0, 3))
    task = display.progress.tasks[0]
    assert task.fields["line"] == "5/14 done, 2 running, 1 failed | 30.0/min | ETA 16s"
    assert (task.completed, task.total) == (6, 14)
    assert [_duration(s) for s in (None, 9.6, 185, 3725)] == ["?", "10s", "3m05s", "1h02m"]
