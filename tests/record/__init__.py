"""Recording tests: the MLflow recorder, the running task, the worker's --record."""
