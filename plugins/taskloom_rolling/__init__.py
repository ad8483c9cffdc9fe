"""The built-in ``rolling`` generator plugin (qlib's ``RollingGen``).

``taskloom.get_generator("rolling")(step=20, rtype="sliding", calendar=cal)`` builds one. The
class lives in :mod:`taskloom_rolling.rolling`; it is imported only when a generator is looked
up, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl


@hookimpl
def taskloom_register_generators(register: Any) -> None:
    """Contribute the ``rolling`` generator."""
    from taskloom_rolling.rolling import RollingGen

    register("rolling", RollingGen)
