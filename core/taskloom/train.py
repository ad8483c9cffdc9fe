"""Training one task, qlib's ``task_train`` contract: build, fit, predict, run record templates.

:func:`train_values` is the part of qlib's ``_exe_task`` that needs no recorder: it builds the
task's model and dataset, fits, predicts the test segment and runs the task's record
templates, and *returns* the values to record. :func:`task_train` runs it inside a new
recorded run and returns the run's JSON reference; :func:`begin_task_train` and
:func:`end_task_train` split that in two for the delay trainers (a run with only the task,
then the training in the same run). The training code makes no tracking call: whichever
recorder plugin runs it records what it returns (``docs/train.md``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from taskloom.errors import ConfigError, TaskloomError
from taskloom.instantiate import instantiate
from taskloom.recordtemplates import build_record, record_configs
from taskloom.registry import lookup

log = logging.getLogger(__name__)

#: the tag a run made by begin/end_task_train carries, and its two values (qlib's names)
STATUS_KEY = "train_status"
STATUS_BEGIN = "begin_task_train"
STATUS_END = "end_task_train"
#: qlib's tag naming the pool task a run was recorded for (a recorder sets it in a pool)
TASK_ID_TAG = "_id in TaskManager"


class TrainError(TaskloomError):
    """A record template returned something that cannot be recorded with the predictions."""


def train_values(task: Mapping[str, Any]) -> dict[str, Any]:
    """Train ``task`` and return what to record: ``{"pred", "label", **each template's values}``.

    Builds ``task["dataset"]`` and ``task["model"]`` with :func:`taskloom.instantiate`, calls
    ``model.fit(dataset)`` (with ``reweighter=task.get("reweighter")`` only when ``fit``
    takes it), ``model.predict(dataset, segment="test")``, reads the test label on the
    predictions' index (none when the dataset has no label), then builds and calls each of
    the task's ``record`` templates (:mod:`taskloom.recordtemplates`). ``task`` is not
    changed. Whatever the model or dataset raises propagates.
    """
    if not isinstance(task, Mapping):
        raise TypeError(f"a training task is a dict, got {type(task).__name__}")
    for field in ("model", "dataset"):
        if field not in task:
            raise ConfigError(f"{field}: the task has no {field!r} config "
                              f"(its keys are {sorted(map(str, task))})")
    log.info("building the dataset")
    dataset = instantiate(task["dataset"], config_path="dataset")
    log.info("building the model")
    model = instantiate(task["model"], config_path="model")
    log.info("fitting %s", type(model).__name__)
    _fit(model, dataset, task.get("reweighter"))
    log.info("predicting the test segment")
    pred = model.predict(dataset, segment="test")
    label = prediction_label(dataset, pred)
    values: dict[str, Any] = {"pred": pred}
    if label is not None:
        values["label"] = label
    for i, config in enumerate(record_configs(task)):
        path = f"record.{i}"
        template = build_record(config, model=model, dataset=dataset, config_path=path)
        log.info("running record template %s", type(template).__name__)
        produced = template.generate(pred=pred, label=label, model=model, dataset=dataset,
                                     task=task)
        _merge(values, produced, path, type(template).__name__)
    return values


def prediction_label(dataset: Any, pred: Any) -> Any:
    """The dataset's raw test label on ``pred``'s index, or ``None`` if it has none.

    Asks ``dataset.prepare("test", col_set="label", data_key="raw")``, and without
    ``data_key`` for a dataset whose ``prepare`` does not take it, as qlib's ``SignalRecord``
    does. A dataset without a label (no ``prepare``, or one that refuses ``col_set="label"``)
    gives ``None``, with a warning.
    """
    try:
        try:
            label = dataset.prepare("test", col_set="label", data_key="raw")
        except TypeError:
            label = dataset.prepare("test", col_set="label")
    except (AttributeError, LookupError, ValueError) as exc:
        log.warning("no test label from %s (%s): the predictions are recorded without one",
                    type(dataset).__name__, exc)
        return None
    index = getattr(pred, "index", None)
    if index is None or not hasattr(label, "reindex"):
        return label
    return label.reindex(index)


def task_train(task: Mapping[str, Any], experiment_name: str, recorder_name: str | None = None,
               *, recorder: str = "mlflow", tags: Mapping[str, str] | None = None,
               **options: Any) -> dict[str, Any]:
    """Train ``task`` inside a new recorded run of ``experiment_name``; the run's JSON reference.

    qlib's ``task_train``: ``recorder_name`` names the run. ``tags`` are set on the run when
    it is created (a trainer passes its ``train_status`` so). ``recorder`` is the registered
    recorder to use and ``options`` its options (``tracking_uri=...`` for MLflow). A training
    failure fails the run and raises. Usable as a pool handler:
    ``run_task(task_train, pool, experiment_name="study")``.
    """
    made = _recorder(recorder, experiment_name, options)
    return made.wrap(train_values, **_wrap_options(recorder_name, tags))(task)


def begin_task_train(task: Mapping[str, Any], experiment_name: str,
                     recorder_name: str | None = None, *, recorder: str = "mlflow",
                     tags: Mapping[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """A run that records only the task (ended FINISHED, tagged ``train_status=begin_task_train``).

    Returns its reference, which a delay trainer stores as the ``part_done`` task's result
    and later gives to :func:`end_task_train`. ``tags`` are set on the run too.
    """
    made = _recorder(recorder, experiment_name, options)
    begin_tags = {**(tags or {}), STATUS_KEY: STATUS_BEGIN}
    return made.wrap(_nothing, **_wrap_options(recorder_name, begin_tags))(task)


def end_task_train(reference: Mapping[str, Any], experiment_name: str, *,
                   recorder: str = "mlflow", **options: Any) -> dict[str, Any]:
    """Train the task of a :func:`begin_task_train` run inside that same run; its new reference.

    The run (``reference["run_id"]``) is resumed, its task read back from the run, trained
    with :func:`train_values`, and tagged ``train_status=end_task_train``; the reference
    returned lists the run's artifacts and metrics. The recorder must be able to resume a
    run (a ``resume(run_id, handler, tags=...)`` method, as the MLflow recorder has).
    """
    if not isinstance(reference, Mapping) or "run_id" not in reference:
        raise TypeError(f"end_task_train needs the reference begin_task_train returned (a dict "
                        f"with a 'run_id'), got {reference!r:.120}")
    made = _recorder(recorder, experiment_name, options)
    resume = getattr(made, "resume", None)
    if resume is None:
        raise TaskloomError(f"recorder {recorder!r} cannot resume a run (it has no resume "
                            "method), so it cannot end a begin_task_train run")
    return resume(reference["run_id"], train_values, tags={STATUS_KEY: STATUS_END})


def _recorder(name: str, experiment_name: str, options: Mapping[str, Any]) -> Any:
    """The recorder ``name`` for ``experiment_name``.

    Not prepared here: a wrapped handler finds or creates its experiment itself (a pool
    worker never prepares), and asking the store once per task costs a query per window.
    """
    return lookup("recorder", name)(experiment_name, **options)


def _wrap_options(run_name: str | None, tags: Mapping[str, str] | None) -> dict[str, Any]:
    """The options of ``wrap`` a train function passes: only those it was given."""
    options: dict[str, Any] = {}
    if run_name is not None:
        options["run_name"] = run_name
    if tags:
        options["tags"] = dict(tags)
    return options


def _fit(model: Any, dataset: Any, reweighter: Any) -> None:
    """``model.fit(dataset)``, with ``reweighter`` when ``fit`` takes it (qlib passes it so)."""
    try:
        parameters = inspect.signature(model.fit).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes = "reweighter" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if takes:
        model.fit(dataset, reweighter=reweighter)
        return
    if reweighter is not None:
        log.warning("%s.fit takes no reweighter; the task's reweighter is ignored",
                    type(model).__name__)
    model.fit(dataset)


def _merge(values: dict[str, Any], produced: Any, path: str, name: str) -> None:
    """Add a template's values to ``values``; a name already holding another value is an error."""
    if not isinstance(produced, Mapping):
        raise TrainError(f"{path}: {name}.generate returned a {type(produced).__name__}; a "
                         "record template returns a dict of values to record")
    for key, value in produced.items():
        if key in values and values[key] is not value:
            raise TrainError(f"{path}: {name} returned {key!r}, which an earlier part of the "
                             "training already recorded; give it another name")
        values[key] = value


def _nothing(task: Any) -> None:
    """The handler of a begin run: the recorder records the task, there is nothing else."""
    return None
