"""The built-in ``multi_horizon`` generator plugin (a usable qlib ``MultiHorizonGenBase``).

``taskloom.get_generator("multi_horizon")(horizons=[1, 5, 20], calendar=cal)`` builds one. The
class lives in :mod:`taskloom_multihorizon.multihorizon` and is imported only on lookup.
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl


@hookimpl
def taskloom_register_generators(register: Any) -> None:
    """Contribute the ``multi_horizon`` generator."""
    from taskloom_multihorizon.multihorizon import MultiHorizonGen

    register("multi_horizon", MultiHorizonGen)
