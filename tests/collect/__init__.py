"""Collection tests: collectors over MLflow runs and their processors."""
