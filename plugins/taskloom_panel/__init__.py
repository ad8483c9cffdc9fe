"""Models and datasets that run without qlib: a panel dataset, a scikit-learn model adapter
and a synthetic market; and the record templates ``SignalRecord`` and ``SigAnaRecord``.

Tasks name the model and dataset by class path (``{"class": "PanelDataset", "module_path":
"taskloom_panel"}``); the record templates are registered, so a task's ``record`` names them
bare, as qlib's do. The names below load their modules (and pandas) on first access: every
CLI call imports this package when it lists plugins, and must stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from taskloom import hookimpl
from taskloom.hookspecs import RegisterRecord

from taskloom_panel.records import SigAnaRecord, SignalRecord
from taskloom_panel.task import panel_task

if TYPE_CHECKING:
    from taskloom_panel.dataset import PanelDataset, PanelError, read_panel, write_panel
    from taskloom_panel.market import (
        FEATURES,
        LABEL,
        NOISE_FEATURES,
        PRICE,
        SIGNAL_FEATURES,
        noise_features,
        signal_features,
        synthetic_market,
    )
    from taskloom_panel.model import SklearnModel

#: public name -> module that defines it (imported on first access)
_LAZY = {
    "PanelDataset": "taskloom_panel.dataset",
    "PanelError": "taskloom_panel.dataset",
    "read_panel": "taskloom_panel.dataset",
    "write_panel": "taskloom_panel.dataset",
    "SklearnModel": "taskloom_panel.model",
    "synthetic_market": "taskloom_panel.market",
    "signal_features": "taskloom_panel.market",
    "noise_features": "taskloom_panel.market",
    "SIGNAL_FEATURES": "taskloom_panel.market",
    "NOISE_FEATURES": "taskloom_panel.market",
    "FEATURES": "taskloom_panel.market",
    "LABEL": "taskloom_panel.market",
    "PRICE": "taskloom_panel.market",
}


@hookimpl
def taskloom_register_records(register: RegisterRecord) -> None:
    """``SignalRecord`` and ``SigAnaRecord``, the templates qlib's tasks name bare."""
    register("SignalRecord", SignalRecord)
    register("SigAnaRecord", SigAnaRecord)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first access (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'taskloom_panel' has no attribute {name!r}")


__all__ = [
    "FEATURES",
    "LABEL",
    "NOISE_FEATURES",
    "PRICE",
    "PanelDataset",
    "PanelError",
    "SIGNAL_FEATURES",
    "SigAnaRecord",
    "SignalRecord",
    "SklearnModel",
    "noise_features",
    "panel_task",
    "read_panel",
    "signal_features",
    "synthetic_market",
    "write_panel",
]
