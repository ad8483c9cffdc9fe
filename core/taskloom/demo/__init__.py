"""The demo study shipped with taskloom: its workflow file and its reduced size."""

from __future__ import annotations

from pathlib import Path

#: the demo's workflow file (package data)
WORKFLOW = Path(__file__).with_name("rolling_demo.yaml")
#: ``--size small``: the market's keywords changed for a quick run (fewer instruments, and
#: data to mid-2018, which leaves six quarterly test windows per model instead of sixteen)
SMALL_MARKET = {"instruments": 60, "end": "2018-06-30"}
