"""``SeedGen``: repeat a task once per random seed (a common way to measure model variance)."""

from __future__ import annotations

import copy
from typing import Any

from taskloom import TaskGen


class SeedGen(TaskGen):
    """One task per seed, the seed written at the dotted ``path`` (created if missing)."""

    def __init__(self, seeds: list[int], path: str = "model.kwargs.seed") -> None:
        if not seeds:
            raise ValueError("seeds: give at least one seed")
        self.seeds = [int(seed) for seed in seeds]
        self.path = path.split(".")

    def generate(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """Copies of ``task`` that differ only in the seed."""
        out = []
        for seed in self.seeds:
            copied = copy.deepcopy(task)
            node = copied
            for part in self.path[:-1]:
                node = node.setdefault(part, {})
            node[self.path[-1]] = seed
            out.append(copied)
        return out
