"""Settings shared by the whole test suite."""

from __future__ import annotations

import os

# Wide, colourless rich output so CLI tests can read whole table rows.
os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("NO_COLOR", "1")
# Tests choose their storage explicitly; a developer's setting must not leak in.
os.environ.pop("TASKLOOM_STORAGE", None)
os.environ.pop("TASKLOOM_BLOCK_PLUGINS", None)
os.environ.pop("TASKLOOM_TRACE_PLUGINS", None)
