"""Workflow files: every class of mistake is one error naming its path, line and value;
``${VAR}`` expansion; passwords in URLs never printed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from taskloom import study
from taskloom.cli import main
from taskloom.errors import TaskloomError
from taskloom.workflow import WorkflowError, load_workflow, mask_url

MINIMAL = """\
name: study
templates:
  - model: {class: Ridge, module_path: sklearn.linear_model}
    dataset: {class: PanelDataset, module_path: taskloom_panel}
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, **kwargs) -> str:
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, text), **kwargs)
    return str(info.value)


def test_a_minimal_workflow_gets_its_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    wf = load_workflow(write(tmp_path, MINIMAL))
    assert wf.pool_name == "study" and wf.experiment_name == "study"
    assert wf.storage_url == f"sqlite:///{tmp_path.resolve() / 'taskloom.db'}"
    assert wf.outputs_dir == tmp_path.resolve() / "outputs"
    assert wf.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert [p.name for p in wf.collect.processors] == ["rolling_group"]
    task = wf.templates[0].as_task()
    assert task["model"] == {"class": "Ridge", "module_path": "sklearn.linear_model",
                             "kwargs": {}}
    assert task["tags"] == {"template": "Ridge"}  # named after the model class by default


def test_a_missing_field_names_its_path_and_line(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("    dataset: {class: PanelDataset, "
                                                 "module_path: taskloom_panel}\n", ""))
    assert "templates[0].dataset (line 3): missing" in message
    assert "class, module_path, kwargs" in message  # what was expected


def test_a_wrong_type_names_the_path_and_the_value(tmp_path):
    message = error_of(tmp_path, MINIMAL + "trainer: {workers: two}\n")
    assert message.startswith("workflow ")
    assert "trainer.workers (line 5): 'two': Input should be a valid integer" in message


def test_an_unknown_generator_lists_the_known_ones(tmp_path):
    message = error_of(tmp_path, MINIMAL + "generators:\n  - name: rollling\n")
    assert "generators[0].name (line 6): 'rollling': unknown generator; known:" in message
    assert "rolling" in message.split("known:")[1]


def test_an_unknown_generator_parameter_names_it_and_lists_the_parameters(tmp_path):
    message = error_of(tmp_path, MINIMAL + "generators:\n  - name: rolling\n"
                                           "    params: {step: 20, stepp: 3}\n")
    assert "generators[0].params.stepp (line 7): 3: generator 'rolling' has no parameter" \
        in message
    assert "it takes step, rtype" in message


def test_a_bad_generator_parameter_value_names_the_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wf = load_workflow(write(tmp_path, MINIMAL + "generators:\n  - name: rolling\n"
                                                 "    params: {step: -5}\n"
                                                 "calendar: {start: '2020-01-01', "
                                                 "end: '2020-12-31'}\n"))
    with pytest.raises(WorkflowError, match=r"generators\[0\]\.params: .*-5"):
        study.generate(wf)


def test_unknown_processor_and_collector_names_list_the_known_ones(tmp_path):
    message = error_of(tmp_path, MINIMAL + "collect:\n  collector: recordr\n"
                                           "  processors: [{name: rolling_grup}]\n")
    assert "2 problems" in message
    assert "collect.collector (line 6): 'recordr': unknown collector; known:" in message
    assert "collect.processors[0].name (line 7): 'rolling_grup': unknown processor; known:" \
        in message
    assert "rolling_group" in message


def test_a_bad_date_names_the_path_and_the_value(tmp_path):
    message = error_of(tmp_path, MINIMAL + "calendar: {start: 2020-13-01, end: 2021-01-01}\n")
    assert "calendar.start (line 5): '2020-13-01': Input should be a valid date" in message


def test_an_unknown_key_is_an_error_listing_the_known_keys(tmp_path):
    message = error_of(tmp_path, MINIMAL + "pool: {nmae: x}\n")
    assert "pool.nmae (line 5): unknown field 'nmae'; expected one of name, storage" in message


def test_an_unreachable_storage_names_the_field_and_the_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/no/such/dir/pool.db"
    wf = load_workflow(write(tmp_path, MINIMAL + f"pool: {{storage: '{url}'}}\n"))
    with pytest.raises(WorkflowError) as info:
        study.open_store(wf)
    assert str(info.value).startswith(f"pool.storage: {url!r}: ")
    assert "unable to open" in str(info.value)


def test_a_store_private_to_the_process_is_refused(tmp_path):
    wf = load_workflow(write(tmp_path, MINIMAL + "pool: {storage: 'memory://'}\n"))
    with pytest.raises(WorkflowError, match="pool.storage: 'memory://' lives only in this"):
        study.open_store(wf)


def test_template_files_are_read_next_to_the_workflow(tmp_path):
    (tmp_path / "tpl").mkdir()
    write(tmp_path, "model: {class: Lasso, module_path: sklearn.linear_model}\n"
                    "dataset: {class: PanelDataset}\n", "tpl/lasso.yaml")
    wf = load_workflow(write(tmp_path, MINIMAL + "  - tpl/lasso.yaml\n"))
    assert [t.label for t in wf.templates] == ["Ridge", "Lasso"]
    message = error_of(tmp_path, MINIMAL + "  - tpl/missing.yaml\n")
    assert "templates[1] (line 5)" in message and "missing.yaml" in message


def test_two_templates_with_one_name_are_refused(tmp_path):
    message = error_of(tmp_path, MINIMAL + "  - model: {class: Ridge}\n"
                                           "    dataset: {class: PanelDataset}\n")
    assert "templates[1] and templates[0] are both named 'Ridge'" in message


def test_environment_variables_fill_string_values(tmp_path):
    text = MINIMAL + ("pool: {name: '${POOL}', storage: 'sqlite:///${DIR:-/tmp}/p.db'}\n"
                      "experiment: {tracking_uri: '${URI:-}'}\n")
    wf = load_workflow(write(tmp_path, text), environ={"POOL": "rolling"})
    assert wf.pool_name == "rolling"
    assert wf.pool.storage == "sqlite:////tmp/p.db"  # the default after :-
    assert wf.experiment.tracking_uri == ""
    message = error_of(tmp_path, text, environ={})
    assert "pool.name (line 5): environment variable POOL is not set (in '${POOL}')" in message


def test_a_password_in_a_url_is_never_printed(tmp_path):
    assert mask_url("mongodb://bob:s3cret@db:27017/x") == "mongodb://bob:***@db:27017/x"
    assert mask_url("sqlite:///pool.db") == "sqlite:///pool.db"
    text = MINIMAL + ("pool: {storage: 'mongodb://bob:${PW}@db:27017'}\n"
                      "trainer: {workers: 0}\n"
                      "experiment: {tracking_uri: 'http://bob:${PW}@mlflow:5000', name: 1}\n")
    message = error_of(tmp_path, text, environ={"PW": "s3cret"})
    assert "s3cret" not in message
    assert "trainer.workers" in message
    wf = load_workflow(write(tmp_path, text.replace("workers: 0", "workers: 1")
                             .replace(", name: 1", "")), environ={"PW": "s3cret"})
    assert wf.mask(f"failed on {wf.storage_url} and {wf.tracking_uri}") == (
        "failed on mongodb://bob:***@db:27017 and http://bob:***@mlflow:5000")
    printed = " ".join(study.worker_argv(wf, masked=True))
    assert "s3cret" not in printed and "mongodb://bob:***@db:27017" in printed


def test_the_cli_reports_a_bad_workflow_in_one_error_and_exit_code_2(tmp_path):
    path = write(tmp_path, MINIMAL + "trainer: {workers: two}\n")
    for command in ("run", "submit", "collect"):
        result = CliRunner().invoke(main, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: workflow ")
        assert "trainer.workers (line 5): 'two'" in result.output
        assert "Traceback" not in result.output


def test_a_missing_calendar_file_and_a_bad_prepare_step_are_named_when_their_stage_runs(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wf = load_workflow(write(tmp_path, MINIMAL + "generators: [{name: rolling}]\n"
                                                 "calendar: {file: days.txt}\n"
                                                 "prepare: [{class: 'taskloom_panel:no_such'}]\n"))
    with pytest.raises(WorkflowError, match=r"calendar.file: 'days.txt': cannot read it"):
        study.generate(wf)
    with pytest.raises(TaskloomError, match=r"prepare\[0\].*no_such"):
        study.prepare(wf)
    (tmp_path / "days.txt").write_text("2020-01-02\n2020-01-03\n")
    assert study.calendar(wf).days.tolist() == [pd.Timestamp("2020-01-02"),
                                                pd.Timestamp("2020-01-03")]
