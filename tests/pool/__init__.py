"""Task pool tests: TaskManager, leases, retries, hooks, workers, CLI, qlib conformance."""
