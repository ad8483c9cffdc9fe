"""The built-in ``rolling`` plugin: qlib's ``RollingGen`` and the processors that undo it.

``taskloom.get_generator("rolling")(step=20, rtype="sliding", calendar=cal)`` builds the
generator (:mod:`taskloom_rolling.rolling`); ``taskloom.get_processor("rolling_group")()``
joins the collected windows again (:mod:`taskloom_rolling.ensemble`). Those modules are
imported only when something of their kind is looked up, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl


@hookimpl
def taskloom_register_generators(register: Any) -> None:
    """Contribute the ``rolling`` generator."""
    from taskloom_rolling.rolling import RollingGen

    register("rolling", RollingGen)


@hookimpl
def taskloom_register_processors(register: Any) -> None:
    """Contribute ``rolling_ensemble`` and ``rolling_group``."""
    from taskloom_rolling.ensemble import RollingEnsemble, RollingGroup

    register("rolling_ensemble", RollingEnsemble)
    register("rolling_group", RollingGroup)
