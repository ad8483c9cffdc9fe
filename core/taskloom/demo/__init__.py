"""The demo study shipped with taskloom: its workflow file and its reduced size."""

from __future__ import annotations

from pathlib import Path

#: the demo's workflow file (package data)
WORKFLOW = Path(__file__).with_name("rolling_demo.yaml")
#: ``--size small``: the market's keywords changed for a quick run (fewer instruments, and
#: data to the end of 2017, which leaves four quarterly test windows per model, not sixteen)
SMALL_MARKET = {"instruments": 40, "end": "2017-12-31"}
