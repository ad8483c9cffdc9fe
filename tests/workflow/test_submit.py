"""``taskloom submit`` and ``collect``: the two ends of a study whose workers run elsewhere."""

from __future__ import annotations

import shlex

from click.testing import CliRunner
from taskloom import TaskManager, study
from taskloom.cli import main
from taskloom.workflow import load_workflow


def test_submit_adds_the_windows_once_and_prints_the_worker_command(study_dir):
    wf = load_workflow(study_dir / "tiny.yaml")
    first = CliRunner().invoke(main, ["submit", "tiny.yaml"])
    assert first.exit_code == 0, first.output
    tasks = study.generate(wf)
    assert f"submitted {len(tasks)} tasks to pool 'tiny'" in first.output
    assert f"{len(tasks)} new" in first.output
    assert TaskManager("tiny", wf.storage_url).task_stat() == {"waiting": len(tasks)}

    command = first.output.strip().splitlines()[-1]
    argv = shlex.split(command)
    assert argv[:3] == ["taskloom", "worker", "tiny"]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options == {"--storage": wf.storage_url, "--handler": "wf_support:train_window",
                       "--concurrency": "2", "--lease": "3", "--max-attempts": "2",
                       "--record": "tiny", "--tracking-uri": wf.tracking_uri}
    # the command is valid: the worker command line accepts every option (checked, not run)
    help_run = CliRunner().invoke(main, [*argv[1:], "--help"])
    assert help_run.exit_code == 0, help_run.output

    again = CliRunner().invoke(main, ["submit", "tiny.yaml"])
    assert "0 new" in again.output
    assert TaskManager("tiny", wf.storage_url).task_stat() == {"waiting": len(tasks)}


def test_collect_before_any_training_says_so(study_dir):
    assert CliRunner().invoke(main, ["submit", "tiny.yaml"]).exit_code == 0
    result = CliRunner().invoke(main, ["collect", "tiny.yaml"])
    assert result.exit_code == 2
    assert "tasks of pool 'tiny' are not done yet" in result.output
    assert "error: " in result.output
