"""Grouping and ensembling collected results: qlib's ``Group`` and ``Ensemble`` bases.

A collector returns ``{artifact_key: {result_key: value}}``; its processors turn each inner
dict into something smaller. :class:`Group` splits the result keys into groups and reduces
each group with an :class:`Ensemble`, e.g. ``{("LGB", window): pred}`` into one continuous
prediction per model. The concrete ensembles live in plugins (``average_ensemble``,
``rolling_ensemble``...); this module holds the bases and :func:`flatten_dict`, and imports
nothing heavy so that ``import taskloom`` stays cheap.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

#: ``flatten_dict(d, sep=FLATTEN_TUPLE)`` joins nested keys into tuples (qlib's sentinel value)
FLATTEN_TUPLE = "_FLATTEN_TUPLE"


def _leaves(d: Mapping[Any, Any], path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every non-mapping value of ``d`` with the path of keys leading to it, depth first."""
    for key, value in d.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def flatten_dict(d: Mapping[Any, Any], parent_key: Any = "", sep: str = ".") -> dict[Any, Any]:
    """Nested dicts made one level deep: ``{"c": {"b": {"x": 5}}}`` → ``{"c.b.x": 5}``.

    With ``sep=FLATTEN_TUPLE`` each leaf's key is the flat tuple of the keys on its path,
    ``("c", "b", "x")``, at any depth (qlib nests them as ``(("c", "b"), "x")`` below depth two;
    its docstring promises the flat tuple). A key at the top level with no parent stays as it
    is. ``parent_key``, when given, is prefixed to every key. Values that are not mappings
    (lists included) are kept as they are.
    """
    prefix = (parent_key,) if parent_key else ()
    flat: dict[Any, Any] = {}
    for path, value in _leaves(d, prefix):
        if len(path) == 1:
            flat[path[0]] = value
        elif sep == FLATTEN_TUPLE:
            flat[path] = value
        else:
            flat[sep.join(str(key) for key in path)] = value
    return flat


def datetime_level(value: Any, key: Hashable) -> int:
    """The position of the index level named ``datetime`` in ``value`` (the result ``key``).

    The ensembles find the level by position, so a pandas object is required and the name
    must occur exactly once: qlib looks it up by name, which fails obscurely when pandas'
    ``groupby().apply`` has added a second ``datetime`` level (qlib #1893, PR #2217).
    """
    names = getattr(getattr(value, "index", None), "names", None)
    if names is None:
        raise TypeError(
            f"result {key!r} is a {type(value).__name__}; a pandas DataFrame or Series "
            "indexed by (datetime, instrument) was expected"
        )
    count = list(names).count("datetime")
    if count == 0:
        raise KeyError(f"result {key!r} has no index level named 'datetime' (its index levels "
                       f"are {list(names)}); rename the date level to 'datetime'")
    if count > 1:
        raise ValueError(
            f"result {key!r} has {count} index levels named 'datetime' ({list(names)}), "
            "usually left by groupby().apply on pandas >= 2; drop the extra level first, e.g. "
            "value.droplevel(0)"
        )
    return list(names).index("datetime")


class Ensemble(ABC):
    """Reduces a dict of results (one group) to one object, e.g. many windows to one frame."""

    @abstractmethod
    def __call__(self, ensemble_dict: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        """The one object that stands for every value of ``ensemble_dict``."""


def _worker_count(n_jobs: int | None, tasks: int) -> int:
    """joblib's reading of ``n_jobs`` (None is 1, -1 every CPU, -2 all but one), capped."""
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use 1 to reduce groups one by one, "
                         "or -1 for one thread per CPU")
    if n_jobs is None:
        wanted = 1
    elif n_jobs < 0:
        wanted = max((os.cpu_count() or 1) + 1 + n_jobs, 1)
    else:
        wanted = n_jobs
    return max(min(wanted, tasks), 1)


class Group:
    """Splits a results dict into groups, then reduces every group: qlib's ``Group``.

    ``{(A, B, C1): x, (A, B, C2): y}`` → ``group`` → ``{(A, B): {C1: x, C2: y}}`` → ``reduce``
    → ``{(A, B): obj}``. ``group_func`` does the split and ``ens`` the reduction; a subclass
    may override :meth:`group` or :meth:`reduce` instead.
    """

    def __init__(
        self,
        group_func: Callable[..., dict[Any, Any]] | None = None,
        ens: Callable[..., Any] | None = None,
    ) -> None:
        self._group_func = group_func
        self._ens_func = ens

    def group(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """``{group_key: {member_key: value}}`` from the results, by ``group_func``."""
        if not callable(self._group_func):
            raise NotImplementedError(
                f"{type(self).__name__} has no group_func to split the results with; pass "
                "Group(group_func=..., ens=...) or override group()"
            )
        return self._group_func(*args, **kwargs)

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        """One group's members reduced to one object, by ``ens``."""
        if not callable(self._ens_func):
            raise NotImplementedError(
                f"{type(self).__name__} has no ens to reduce a group with; pass "
                "Group(group_func=..., ens=...) or override reduce()"
            )
        return self._ens_func(*args, **kwargs)

    def __call__(
        self, ungrouped_dict: dict[Any, Any], n_jobs: int | None = 1, verbose: int = 0,
        *args: Any, **kwargs: Any,
    ) -> dict[Any, Any]:
        """``{group_key: reduced}`` in the order :meth:`group` returned the groups.

        ``args`` and ``kwargs`` go to :meth:`group`. With ``n_jobs`` other than 1 the groups
        are reduced on that many threads (-1: one per CPU): no result is copied or pickled,
        and pandas releases the GIL in its heavy loops. ``verbose > 0`` logs each group.
        """
        grouped = self.group(ungrouped_dict, *args, **kwargs)
        keys = list(grouped)
        workers = _worker_count(n_jobs, len(keys))

        def reduce_one(key: Any) -> Any:
            reduced = self.reduce(grouped[key])
            if verbose > 0:
                logger.info("%s reduced group %r", type(self).__name__, key)
            return reduced

        if workers == 1:
            return {key: reduce_one(key) for key in keys}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(keys, pool.map(reduce_one, keys), strict=True))
