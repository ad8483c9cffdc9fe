"""Fixtures of the workflow tests: a tiny study's workflow file in a fresh working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

#: a tiny rolling study: two linear models on 12 instruments, test windows of 30 days in 2020
TINY = """\
name: tiny
prepare:
  - class: "wf_support:write_market"
    kwargs: {path: market.parquet, instruments: 12, start: "2019-01-01", end: "2020-05-29"}
templates:
  - name: ridge
    model:
      class: SklearnModel
      module_path: taskloom_panel
      kwargs: {estimator: {class: Ridge, module_path: sklearn.linear_model}}
    dataset: &dataset
      class: PanelDataset
      module_path: taskloom_panel
      kwargs:
        handler:
          class: "taskloom_panel:read_panel"
          kwargs: {path: market.parquet, start_time: "2019-01-01", end_time: "2020-02-12"}
        segments:
          train: ["2019-01-01", "2019-09-30"]
          valid: ["2019-10-01", "2019-12-31"]
          test: ["2020-01-01", null]
  - name: ols
    model:
      class: SklearnModel
      module_path: taskloom_panel
      kwargs: {estimator: {class: LinearRegression, module_path: sklearn.linear_model}}
    dataset: *dataset
generators:
  - name: rolling
    params: {step: 30, rtype: sliding}
calendar: {start: "2019-01-01", end: "2020-05-29"}
trainer: {workers: 2, handler: "wf_support:train_window", lease_seconds: 3}
"""


@pytest.fixture
def study_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding ``tiny.yaml``; wf_support importable here and by workers."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TASKLOOM_STORAGE", raising=False)
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    (tmp_path / "tiny.yaml").write_text(TINY, encoding="utf-8")
    return tmp_path
