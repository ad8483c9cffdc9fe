"""Collector processors that group and ensemble collected results.

Registers ``group`` (the core :class:`taskloom.Group`), ``average_ensemble`` and
``single_key_ensemble`` (:mod:`taskloom_ensemble.ensembles`); ``taskloom.get_processor(name)``
returns the class. The rolling processors come with the rolling plugin.
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl


@hookimpl
def taskloom_register_processors(register: Any) -> None:
    """Contribute ``group``, ``average_ensemble`` and ``single_key_ensemble``."""
    from taskloom.ensemble import Group

    from taskloom_ensemble.ensembles import AverageEnsemble, SingleKeyEnsemble

    register("group", Group)
    register("average_ensemble", AverageEnsemble)
    register("single_key_ensemble", SingleKeyEnsemble)
