"""Task generation: the ``TaskGen`` contract, ``task_generator``, and helpers generators share.

A task is a plain nested dict. Generators find the segments (``{key: (start, end)}``) at a
dotted path, ``dataset.kwargs.segments`` by default (qlib's layout); any other layout works by
passing another path. The concrete generators (``rolling``, ``multi_horizon``) are plugins; this
module holds what every generator needs: reading and writing the segments, copying tasks
quickly without sharing state, and the default handler end-time hook.
"""

from __future__ import annotations

import abc
import copy
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from taskloom.calendar import CalendarError, to_timestamp

Task = dict[str, Any]
PathLike = str | Sequence[str]

DEFAULT_SEGMENTS_PATH: tuple[str, ...] = ("dataset", "kwargs", "segments")


class SegmentError(CalendarError):
    """A task's segments are missing or malformed."""


# --------------------------------------------------------------------------------------------
# Paths into a task
# --------------------------------------------------------------------------------------------


def parse_path(path: PathLike, what: str = "segments path") -> tuple[str, ...]:
    """A dotted path (``"dataset.kwargs.segments"``) or a sequence of keys, as a tuple of keys.

    ``what`` names the parameter in the error a malformed path raises.
    """
    if isinstance(path, str):
        parts = tuple(path.split("."))
    elif isinstance(path, list | tuple):
        parts = tuple(path)
    else:
        parts = ()
    if not parts or not all(isinstance(part, str) and part for part in parts):
        raise SegmentError(f"{what} must be dotted keys like 'dataset.kwargs.segments', "
                           f"got {path!r}")
    return parts


def get_segments(task: Mapping[str, Any], path: Sequence[str] = DEFAULT_SEGMENTS_PATH
                 ) -> Mapping[str, Any]:
    """The segments mapping at ``path``; a ValueError names the path if it is missing."""
    node: Any = task
    for depth, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            where = ".".join(path[:depth]) or "the task"
            raise SegmentError(f"task has no segments at {'.'.join(path)!r} "
                               f"({where} has no key {key!r})")
        node = node[key]
    if not isinstance(node, Mapping):
        raise SegmentError(f"{'.'.join(path)} must be a mapping {{key: (start, end)}}, "
                           f"got {node!r:.80}")
    return node


def set_path(task: Task, path: Sequence[str], value: Any) -> None:
    """Set ``task[path[0]]...[path[-1]] = value`` in place, with plain item access."""
    node = task
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def replace_path(task: Task, path: Sequence[str], value: Any) -> None:
    """Set the value at ``path`` in ``task``, replacing every dict below ``task`` on the way
    by a shallow copy instead of writing into it.

    A ``task_copy_func`` may share parts of a task on purpose with the template and the other
    outputs; writing through copies keeps such shared dicts (and so the template and every
    other task) unchanged, which is what keeps generation pure. Only ``task`` itself is
    changed in place. A missing key raises ``KeyError``, as :func:`set_path` does.
    """
    node = task
    for key in path[:-1]:
        child = dict(node[key])
        node[key] = child
        node = child
    node[path[-1]] = value


def _replaced(node: Any, path: Sequence[str], value: Any) -> Any:
    """A copy of ``node`` with only the dicts along ``path`` copied and the leaf replaced."""
    if not path:
        return value
    if not isinstance(node, Mapping) or path[0] not in node:
        return node
    out = dict(node)
    out[path[0]] = _replaced(node[path[0]], path[1:], value)
    return out


# --------------------------------------------------------------------------------------------
# Copies
# --------------------------------------------------------------------------------------------


class TaskSnapshot:
    """A task frozen once, from which independent deep copies are made quickly.

    The task is pickled once; every :meth:`copy` unpickles it, which is several times faster
    than ``copy.deepcopy`` for JSON-like tasks and equally independent (no shared dicts or
    lists). A task holding something that cannot be pickled (a lambda, a local class) falls
    back to ``copy.deepcopy``. ``omit`` names a subtree (the segments) that every copy
    replaces anyway, so it is left out of the snapshot (``None`` in the copies).
    """

    __slots__ = ("_blob", "_task")

    def __init__(self, task: Mapping[str, Any], omit: Sequence[str] | None = None) -> None:
        source = _replaced(task, omit, None) if omit else task
        try:
            self._blob: bytes | None = pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)
            self._task: Any = None
        except Exception:  # anything pickle refuses (lambdas, local classes, odd __reduce__)
            self._blob = None
            self._task = copy.deepcopy(source)

    def copy(self) -> Task:
        """A new, fully independent copy."""
        if self._blob is not None:
            return pickle.loads(self._blob)
        return copy.deepcopy(self._task)


# --------------------------------------------------------------------------------------------
# The generator contract
# --------------------------------------------------------------------------------------------


class TaskGen(abc.ABC):
    """A task generator: ``generate(task)`` returns new tasks derived from one template.

    Implementations must not mutate ``task`` and must return tasks that share no mutable
    state with each other or with the template. Calling the generator is the same as calling
    :meth:`generate`. Generators that work on segments set ``segments_path`` and ``test_key``
    so hooks such as :func:`extend_handler_end` can find the test window.
    """

    segments_path: tuple[str, ...] = DEFAULT_SEGMENTS_PATH
    test_key: str = "test"

    @abc.abstractmethod
    def generate(self, task: Task) -> list[Task]:
        """The tasks generated from the template ``task``."""

    def __call__(self, task: Task) -> list[Task]:
        return self.generate(task)


Generator = TaskGen | Callable[[Task], list[Task]]


def task_generator(tasks: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                   generators: Generator | Iterable[Generator]) -> list[Task]:
    """Apply ``generators`` in order to every template, as qlib's ``task_generator`` does.

    ``tasks`` is one template dict or a list of them; ``generators`` is one generator (a
    :class:`TaskGen` or any callable ``task -> list``) or a list of them. Each generator expands
    every task of the current list in place, so the result is template-major and depth-first:
    templates ``[a, b]`` and a generator giving two tasks each yield ``[a1, a2, b1, b2]``.
    With no generators the templates come back as they are (a dict as a one-element list).
    """
    if isinstance(tasks, Mapping):
        tasks = [tasks]
    current = list(tasks)
    for position, task in enumerate(current):
        if not isinstance(task, Mapping):
            raise ValueError(f"tasks[{position}] must be a task dict, got {type(task).__name__}")
    if isinstance(generators, TaskGen) or callable(generators):
        generators = [generators]
    for gen in generators:
        if not callable(gen):
            raise ValueError(f"generator {gen!r:.80} is neither a TaskGen nor callable")
        current = [new for task in current for new in gen(task)]
    return current


# --------------------------------------------------------------------------------------------
# The default handler hook
# --------------------------------------------------------------------------------------------


def extend_handler_end(task: Task, gen: TaskGen) -> None:
    """Make the data handler load data up to the end of the task's test window (in place).

    The default ``ds_extra_mod_func`` of the rolling generator (qlib's ``handler_mod`` at
    HEAD, comparing real dates). With ``h = dataset.kwargs.handler.kwargs``:

    * the test window is open (its end is ``None``): ``h["end_time"] = None`` (load all);
    * ``h["end_time"]`` is a date before the test end: it becomes the test end;
    * otherwise (no handler, a ``"file://"`` handler, ``end_time`` missing, ``None`` or not
      before the test end) nothing changes. ``end_time`` never shrinks, and ``start_time`` and
      the ``fit_*`` times are never touched.

    The test window is read from ``gen.segments_path`` / ``gen.test_key``. ``end_time`` is
    written through copies of the dicts on its path (:func:`replace_path`), so a handler
    config that ``task_copy_func`` shares between windows is never changed.
    """
    try:
        handler_kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
        segments = task
        for key in gen.segments_path:
            segments = segments[key]
        test_end = segments[gen.test_key][1]
    except (KeyError, TypeError, IndexError):
        return
    if not isinstance(handler_kwargs, dict):
        return
    if test_end is None:
        replace_path(task, _HANDLER_END_PATH, None)
        return
    end_time = handler_kwargs.get("end_time")
    if end_time is None:
        return
    try:
        before = to_timestamp(end_time) < to_timestamp(test_end)
    except CalendarError as exc:
        raise SegmentError(f"dataset.kwargs.handler.kwargs.end_time: {exc}") from None
    if before:
        replace_path(task, _HANDLER_END_PATH, test_end)


_HANDLER_END_PATH = ("dataset", "kwargs", "handler", "kwargs", "end_time")
