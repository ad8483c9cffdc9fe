#!/usr/bin/env bash
# The most complete taskloom flow on the embedded defaults: generate a rolling study from a
# qlib-style template, submit it to a SQLite task pool, drain the pool with two worker
# processes, and show the pool and the results. Run it from anywhere; it works in a
# temporary folder unless TASKLOOM_STORAGE is set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workdir="${TASKLOOM_EXAMPLE_DIR:-$(mktemp -d)}"
export TASKLOOM_STORAGE="${TASKLOOM_STORAGE:-sqlite:///$workdir/taskloom.db}"
echo "pool storage: $TASKLOOM_STORAGE"

# 1. One task per 250-trading-day test window, submitted to the pool "rolling_study".
taskloom generate "$here/templates/rolling_lgbm.yaml" --generator rolling \
    --param step=250 --param rtype=sliding \
    --calendar "$here/calendars/weekdays_2005_2022.txt" --pool rolling_study

# 2. Two worker processes claim, run and commit every task, then exit when the pool is idle.
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" taskloom worker rolling_study \
    --handler window_stats:summarize --concurrency 2 --idle-exit 1

# 3. The pool and what each task returned.
taskloom status rolling_study
taskloom ls rolling_study
