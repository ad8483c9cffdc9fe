"""An example third-party taskloom plugin: a seed generator and a scoring handler."""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl


@hookimpl
def taskloom_register_generators(register: Any) -> None:
    """Contribute the ``seeds`` generator."""
    from taskloom_example.seeds import SeedGen

    register("seeds", SeedGen)


@hookimpl
def taskloom_register_handlers(register: Any) -> None:
    """Contribute the ``score_params`` handler."""
    from taskloom_example.handlers import score_params

    register("score_params", score_params)
