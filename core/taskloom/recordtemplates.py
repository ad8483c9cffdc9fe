"""Record templates: what a task's ``record`` entries build, and how they are resolved.

A task lists record templates as qlib does (``"record": [{"class": "SignalRecord"},
{"class": "SigAnaRecord", "kwargs": {"ana_long_short": True}}]``). After training,
:func:`taskloom.train.train_values` builds each one and calls it; what it returns is recorded
with the predictions. The protocol (:class:`RecordTemplate`):

* **Resolution.** A bare class name with no ``module_path`` (``"SignalRecord"``) is looked up
  among the templates plugins registered with ``taskloom_register_records``: the registry
  plays the part of qlib's ``default_module="qlib.workflow.record_temp"``. Anything else (a
  ``module_path``, a ``"package.module:Class"`` path, a class) is built by
  :func:`taskloom.instantiate`, so a third-party template is a class path, as in qlib.
* **Building.** ``instantiate(config, try_kwargs={"model": model, "dataset": dataset})``: a
  template whose constructor takes ``model`` or ``dataset`` receives the trained model and
  the dataset. The strings ``"<MODEL>"`` and ``"<DATASET>"`` anywhere in the config's
  ``kwargs`` are replaced by them first, in a copy (the task is never changed).
* **Generating.** ``template.generate(pred=..., label=..., model=..., dataset=..., task=...)``
  returns a dict of values to record: pandas objects become ``<key>.parquet`` artifacts,
  numbers metrics, JSON data ``<key>.json`` (the recorder's rules, ``docs/recording.md``).
  ``pred`` is the test predictions (a Series, or a DataFrame), ``label`` the test label on
  the same index (a DataFrame or Series, or ``None`` when the dataset has none). A template
  should accept ``**context`` so that new context keys do not break it. It records nothing
  itself: it returns values, and whichever recorder runs the training records them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from taskloom.errors import ConfigError
from taskloom.instantiate import instantiate
from taskloom.registry import lookup

#: placeholder string -> the name of the object it stands for in a record config
PLACEHOLDERS = {"<MODEL>": "model", "<DATASET>": "dataset"}


@runtime_checkable
class RecordTemplate(Protocol):
    """A record template: turns a training's predictions into values to record."""

    def generate(self, *, pred: Any, label: Any, **context: Any) -> Mapping[str, Any]:
        """The values to record, by name (see the module docstring for the context keys)."""


def record_configs(task: Mapping[str, Any]) -> list[Any]:
    """The task's ``record`` entries as a list: none, one dict, or a list of them."""
    records = task.get("record")
    if records is None:
        return []
    if isinstance(records, Mapping | str):
        return [records]
    if isinstance(records, list | tuple):
        return list(records)
    raise ConfigError(f"record: expected a record config or a list of them, got "
                      f"{type(records).__name__} {records!r:.80}")


def fill_placeholders(value: Any, objects: Mapping[str, Any]) -> Any:
    """A copy of ``value`` with each placeholder string replaced by its object.

    ``objects`` maps placeholder strings (``"<MODEL>"``) to what replaces them. Dicts, lists
    and tuples are rebuilt; the input is never changed (qlib's ``fill_placeholder`` edits the
    caller's task in place).
    """
    if isinstance(value, str):
        return objects.get(value, value)
    if type(value) is dict:
        return {key: fill_placeholders(item, objects) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(fill_placeholders(item, objects) for item in value)
    return value


def build_record(config: Any, *, model: Any, dataset: Any,
                 config_path: str = "record") -> RecordTemplate:
    """The record template ``config`` describes, built for a trained ``model`` on ``dataset``.

    A bare class name is a registered template (``taskloom.get_record``); placeholders are
    filled in a copy; ``model`` and ``dataset`` are offered as ``try_kwargs``. A built object
    without a ``generate`` method is a :class:`~taskloom.errors.ConfigError`.
    """
    objects = {placeholder: {"model": model, "dataset": dataset}[name]
               for placeholder, name in PLACEHOLDERS.items()}
    config = fill_placeholders(config, objects)
    if isinstance(config, str):
        config = {"class": config}
    if isinstance(config, Mapping) and _is_registered_name(config):
        config = {**config, "class": lookup("record", config["class"])}
    template = instantiate(config, try_kwargs={"model": model, "dataset": dataset},
                           config_path=config_path)
    if not callable(getattr(template, "generate", None)):
        raise ConfigError(f"{config_path}: {type(template).__name__} is not a record template "
                          "(it has no generate method)")
    return template


def _is_registered_name(config: Mapping[str, Any]) -> bool:
    """Whether a config names its class by a bare name that only the registry can resolve."""
    klass = config.get("class")
    return (isinstance(klass, str) and "module_path" not in config
            and ":" not in klass and "." not in klass)
