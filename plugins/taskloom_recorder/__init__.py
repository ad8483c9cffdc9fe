"""Recording on MLflow: run any handler inside an MLflow run, and collect recorded runs."""
