"""qlib's ``TaskManager`` and ``run_task`` on a taskloom pool, with leases and bounded retries.

The method names, arguments and observable behaviour follow qlib's
``qlib.workflow.task.manage`` (the scripted scenario in ``tests/conformance/taskmanager``
pins them). This module is the qlib-shaped layer; what happens to one attempt at a task
(claim, lease renewal, commit, error, give-back, expiry) is :mod:`taskloom.attempt`'s. What
changes against qlib:

* every fetch is a lease (owner, token, expiry) that a background thread renews while a task
  runs in :meth:`TaskManager.safe_fetch_task`, :meth:`TaskManager.task_fetcher_iter` or
  :func:`run_task`; commits and returns are fenced by the lease token, which only the claimer
  sees, so a worker whose lease expired and whose task was reclaimed cannot overwrite the
  newer attempt;
* a task whose function raised is retried a bounded number of times, then ``failed`` with
  its traceback and a history of attempts (see :mod:`taskloom.retry`);
* tasks and results are JSON, deduplicated by :func:`taskloom.task_key` under a unique index,
  and counting never decodes payloads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from taskloom.attempt import (
    RUNNABLE,
    Attempts,
    OnError,
    call_task,
    result_json,
    task_id_of,
    without_token,
)
from taskloom.errors import LeaseLostError, TaskEncodingError, UnknownTaskError
from taskloom.gctuning import SetupFrozen
from taskloom.jsontypes import restore, type_map
from taskloom.outcome import Outcome
from taskloom.query import And, normalize
from taskloom.registry import lookup
from taskloom.retry import RetryPolicy
from taskloom.status import check_after_status
from taskloom.storage import (
    CANCELLED,
    DONE,
    FAILED,
    PART_DONE,
    RUNNING,
    UNDONE,
    WAITING,
    Record,
    Store,
)
from taskloom.stores import get_storage
from taskloom.taskkey import data_key, to_canonical, to_jsonable

log = logging.getLogger(__name__)

#: lease length of a fetch; held tasks are renewed every third of it
DEFAULT_LEASE_SECONDS = 300.0
#: what TaskManager.cancel cancels when the query names no status
CANCELLABLE = (WAITING, PART_DONE, RUNNING)
#: fields of a raw record that TaskManager.insert_task accepts
INSERTABLE_FIELDS = frozenset({"def", "filter", "status", "res", "priority"})


def _query(query: Mapping[str, Any] | And | None) -> dict[str, Any] | And:
    """A private copy of a caller's query (qlib mutated the caller's dict).

    A tree :func:`~taskloom.query.normalize` made is immutable and passes as it is, so a loop
    that normalised its query once claims with the same tree (a store may keep what it
    compiled it to).
    """
    if query is None:
        return {}
    # a plain dict, the usual case, skips the other checks (a worker's every claim)
    if type(query) is dict:
        return dict(query)
    if isinstance(query, And):
        return query
    if not isinstance(query, Mapping):
        raise TypeError(f"a query is a dict, not {type(query).__name__}")
    return dict(query)


def _canonical_def(task: Any, i: int) -> dict[str, Any]:
    """Task ``i`` of a submission as the canonical JSON data the pool stores."""
    try:
        data = to_canonical(task)
    except TaskEncodingError as exc:
        raise TaskEncodingError(
            f"task {i}: {exc} (tasks are stored as JSON: pass dates, numbers, "
            "strings, lists and dicts)"
        ) from exc
    if not isinstance(data, dict):
        raise TaskEncodingError(f"task {i}: a task definition is a dict, got {task!r:.80}")
    return data


def _typed(record: Record) -> Record:
    """The record with its definition given back the types it was submitted with.

    The pool keeps a definition as plain JSON plus a type map (:mod:`taskloom.jsontypes`), so
    a task function or a qlib ``rec_key_func`` gets tuples of ``pd.Timestamp`` back, not lists
    of strings.
    """
    types = record.get("types")
    if not types:
        return record
    return {**record, "def": restore(record["def"], types)}


#: on_error values by name (an Enum lookup per task would cost as much as the check itself)
_ON_ERRORS: dict[str, OnError] = {str(mode): mode for mode in OnError}


def check_run_args(
    before_status: str,
    after_status: str,
    on_error: str,
    force_release: bool,
    initializer: Callable[..., object] | None,
) -> OnError:
    """Refuse run arguments that cannot work, before anything is claimed; returns on_error."""
    if before_status not in RUNNABLE:
        raise ValueError(
            f"before_status must be 'waiting' (the task function gets the definition) or "
            f"'part_done' (it gets the stored result), got {before_status!r}"
        )
    check_after_status(after_status)
    if on_error not in _ON_ERRORS:
        raise ValueError(f"on_error must be one of {[str(o) for o in OnError]}, got {on_error!r}")
    if initializer is not None and not force_release:
        raise ValueError(
            f"initializer={initializer!r} needs force_release=True: it sets up the child "
            "process that runs each task; without force_release the task runs in this "
            "process, which you set up before calling"
        )
    return _ON_ERRORS[on_error]


@dataclass(frozen=True)
class InsertResult:
    """What :meth:`TaskManager.insert_task` did; ``inserted_id`` as on pymongo's result."""

    inserted_id: str
    #: False when an equal task was already in the pool: nothing was inserted or changed
    created: bool


class TaskManager:
    """One task pool: qlib's TaskManager API over any taskloom store.

    ``task_pool`` names the pool; ``storage`` is a URL, a :class:`~taskloom.storage.Store` or
    a ready client object (``None``: ``TASKLOOM_STORAGE`` or ``sqlite:///taskloom.db``).
    Records returned are the store's records: ``task["_id"]``, ``task["def"]``,
    ``task["status"]``, ``task["res"]`` as in qlib, plus ``priority``, ``attempt``, ``lease``,
    ``attempts`` (the history) and ``error``. Only a fetch returns the lease's ``token``.
    With ``create=False`` nothing is created: a URL naming no store yet is a
    :class:`~taskloom.errors.StorageError` and an unknown pool an
    :class:`~taskloom.errors.UnknownNameError` (what workers and the pool commands use).
    """

    STATUS_WAITING = WAITING
    STATUS_RUNNING = RUNNING
    STATUS_PART_DONE = PART_DONE
    STATUS_DONE = DONE
    STATUS_FAILED = FAILED
    STATUS_CANCELLED = CANCELLED

    def __init__(
        self,
        task_pool: str,
        storage: str | Store | object | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        retry_policy: RetryPolicy | None = None,
        create: bool = True,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}")
        self.task_pool = task_pool
        self.store = get_storage(storage, create=create)
        self.pool = self.store.pool(task_pool, create=create)
        self.lease_seconds = float(lease_seconds)
        #: the attempt state machine every claim, commit and return goes through
        self.attempts = Attempts(self.pool, lease_seconds=self.lease_seconds,
                                 retry_policy=retry_policy or RetryPolicy(),
                                 storage=self.store.url)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of this manager's attempts; assigning it applies from now on."""
        return self.attempts.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self.attempts.retry_policy = policy

    @property
    def owner(self) -> str:
        """``host:pid:random``: the lease owner this manager's fetches record."""
        return self.attempts.owner

    def __str__(self) -> str:
        return f"TaskManager({self.store.url}, {self.task_pool})"

    @staticmethod
    def list(storage: str | Store | object | None = None) -> list[str]:
        """The names of every pool in the store (qlib: the collections of the database)."""
        return sorted(get_storage(storage).list_pools())

    # ----------------------------------------------------------------------------------------
    # Submitting
    # ----------------------------------------------------------------------------------------

    def create_task(
        self, task_def_l: Iterable[Any], dry_run: bool = False, print_nt: bool = False
    ) -> list[str]:
        """Insert the tasks not yet in the pool; returns one id per input task, in order.

        A task already in the pool (whatever its status), or repeated in the list, resolves
        to the existing id. The batch is checked first and inserted atomically: a task with
        no JSON form raises :class:`TaskEncodingError` naming it, and nothing is inserted.
        ``dry_run`` inserts nothing and returns ``[]``; ``print_nt`` prints each task the
        (real or dry) run creates, once. A task comes back from the pool with the types it was
        submitted with (tuples, ``pd.Timestamp``...); of equal tasks, the first stored keeps
        its types.
        """
        # Each task is converted once, to the canonical data the store keeps; its key hashes
        # that data and the store accepts it after a cheap check (Pool.insert_many's contract).
        tasks: list[Any] = []
        defs: list[dict[str, Any]] = []
        for i, task in enumerate(task_def_l):
            tasks.append(task)
            defs.append(_canonical_def(task, i))
        keys = [data_key(data) for data in defs]
        types = [type_map(task) for task in tasks]
        if dry_run:
            existing = self.pool.ids_for_keys(keys)
            new = {key: task for key, task in zip(keys, tasks, strict=True) if key not in existing}
            created = list(new.values())
            ids: list[str] = []
        else:
            results = self.pool.insert_many(list(zip(keys, defs, types, strict=True)),
                                            time.time())
            created = [task for task, (_, new_) in zip(tasks, results, strict=True) if new_]
            ids = [task_id for task_id, _ in results]
        if print_nt:
            for task in created:
                print(to_jsonable(task))  # the caller's key order, not the stored one
        log.info("pool %s: total tasks %d, new tasks %d", self.task_pool, len(defs), len(created))
        return ids

    def insert_task_def(self, task_def: Any) -> InsertResult:
        """qlib: insert one task definition as ``waiting``; returns its id.

        Unlike qlib, a definition equal to a task already in the pool (in any status) is not
        inserted again: the result names that task, with ``created=False``.
        """
        return self.insert_task({"def": task_def})

    def insert_task(self, task: Mapping[str, Any]) -> InsertResult:
        """qlib: insert a raw record ``{"def", "status", "res", "priority"}``; returns its id.

        ``def`` is required; ``status`` defaults to ``waiting``, ``res`` to None, ``priority``
        to 0. qlib's ``filter`` is accepted when it equals ``def`` (queries read it from
        ``def``). ``_id``, leases and history are the pool's to set, so any other field is a
        ValueError naming it, as is ``status="running"`` (a running task without a lease
        would never be claimed or reaped). As in :meth:`create_task`, a definition already in
        the pool resolves to that task, which is left as it is (``created=False``).
        """
        if not isinstance(task, Mapping) or "def" not in task:
            raise ValueError(f"insert_task needs a record with a 'def', got {task!r:.80}")
        unknown = sorted(set(task) - INSERTABLE_FIELDS)
        if unknown:
            raise ValueError(f"insert_task: field(s) {unknown} cannot be inserted; a raw record "
                             f"has {sorted(INSERTABLE_FIELDS)}")
        data = _canonical_def(task["def"], 0)
        if "filter" in task and to_jsonable(task["filter"]) != data:
            raise ValueError("insert_task: 'filter' differs from 'def'; taskloom queries the "
                             f"definition itself, got filter={task['filter']!r:.80}")
        changes: dict[str, Any] = {}
        status = task.get("status", WAITING)
        if not isinstance(status, str) or not status or status == RUNNING:
            raise ValueError(f"insert_task: status {status!r} cannot be inserted; a running "
                             "task gets its lease from a fetch")
        if status != WAITING:
            changes["status"] = status
        if task.get("res") is not None:
            try:
                changes["res"] = to_jsonable(task["res"])
            except TaskEncodingError as exc:
                raise TaskEncodingError(f"insert_task: res: {exc}") from exc
        priority = task.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"insert_task: priority must be an int, got {priority!r}")
        if priority:
            changes["priority"] = priority
        ((task_id, created),) = self.pool.insert_many(
            [(data_key(data), data, type_map(task["def"]))], time.time())
        if created and changes:
            # a worker may claim the new waiting task in between; setting the status takes
            # it back (its commit is then rejected), so the record ends as the caller asked
            self.pool.update_many({"_id": task_id}, changes, time.time())
        return InsertResult(task_id, created)

    # ----------------------------------------------------------------------------------------
    # Claiming and ending attempts
    # ----------------------------------------------------------------------------------------

    def fetch_task(
        self, query: Mapping[str, Any] | And | None = None, status: str = WAITING
    ) -> Record | None:
        """Claim the best matching task in ``status`` (highest priority, then oldest).

        The task comes back ``running`` under a lease of ``lease_seconds`` (renew it with
        :meth:`renew`, or use :meth:`safe_fetch_task`, which renews it for you); its
        ``lease.token`` is what lets this worker's commit through. A task whose previous
        worker vanished is claimable again once its lease expired; if that used up its
        attempts it is marked ``failed`` instead and the next task is claimed. None when
        nothing is claimable.
        """
        return self._fetch(_query(query), status)

    def _fetch(self, query: dict[str, Any] | And, status: str) -> Record | None:
        task = self.attempts.claim(query, status)
        return None if task is None else _typed(task)

    @contextmanager
    def safe_fetch_task(
        self, query: Mapping[str, Any] | None = None, status: str = WAITING
    ) -> Iterator[Record | None]:
        """Fetch a task for the with-block, keeping its lease alive while the block runs.

        If the block raises, the task goes back to ``status`` at once (qlib) and the very
        same exception propagates; an ``Exception`` counts as a failed attempt, so a task
        that fails ``max_attempts`` times becomes ``failed`` instead. Yields None when
        nothing is claimable. Commit inside the block with :meth:`commit_task_res`.
        """
        task = self.fetch_task(query, status)
        if task is None:
            yield None
            return
        with self.attempts.hold(task):
            yield task

    def task_fetcher_iter(self, query: Mapping[str, Any] | None = None) -> Iterator[Record]:
        """Yield waiting tasks one by one until none is left; the consumer commits each.

        While the consumer works on a task its lease is renewed. If the consumer raises or
        abandons the iterator (``break``, ``close()``) before committing, the task goes back
        to ``waiting`` (qlib left it ``running`` forever).
        """
        while True:
            task = self.fetch_task(query)
            if task is None:
                return
            with self.attempts.hold(task):
                yield task

    def commit_task_res(
        self, task: Mapping[str, Any] | str, res: Any, status: str | None = DONE
    ) -> None:
        """Store ``res`` as the task's result and set ``status`` (``None`` means done).

        ``res`` must be JSON data: models, predictions and other artifacts belong in the
        recorder (MLflow), and the result holds a reference to them. A task fetched by this
        or another worker carries its lease; if that lease was lost (expired and reclaimed,
        or reset), :class:`LeaseLostError` is raised and nothing changes. A task without a
        lease (``{"_id": id}``, a bare id string, or a record read back by :meth:`query`) is
        an administrative, unguarded update.
        """
        self.attempts.commit(task, result_json(task, res), status or DONE)

    def return_task(self, task: Mapping[str, Any] | str, status: str | None = WAITING) -> None:
        """Put a fetched task back in ``status`` (``None`` means waiting), claimable at once.

        Fenced like :meth:`commit_task_res`; the stored result is kept.
        """
        self.attempts.give_back(task, status or WAITING)

    def renew(self, task: Mapping[str, Any]) -> None:
        """Extend a fetched task's lease by ``lease_seconds`` from now.

        For code that uses :meth:`fetch_task` directly and works longer than a lease;
        raises :class:`LeaseLostError` if the lease is already gone.
        """
        self.attempts.renew(task)

    # ----------------------------------------------------------------------------------------
    # Running
    # ----------------------------------------------------------------------------------------

    def run_one(
        self,
        task_func: Callable[..., Any],
        query: Mapping[str, Any] | None = None,
        *,
        before_status: str = WAITING,
        after_status: str = DONE,
        on_error: str = OnError.RAISE,
        force_release: bool = False,
        kwargs: Mapping[str, Any] | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> str | None:
        """Claim one task, run ``task_func`` on it, and commit; None when nothing is claimable.

        ``task_func(param, **kwargs)`` gets the definition for a ``waiting`` task and the
        stored result for a ``part_done`` one. If it raises (``sys.exit()`` included), the
        attempt is recorded: with ``on_error="raise"`` (qlib) the task is claimable again at
        once and the exception propagates; with ``"retry"`` the task waits out the policy's
        backoff and this call returns. Either way the last allowed attempt marks the task
        ``failed``. ``force_release`` runs the function in a fresh child process, set up by
        ``initializer(*initargs)``. Arguments that cannot work (``after_status`` running,
        waiting, failed or cancelled; an initializer without force_release) are a ValueError
        before anything is claimed. Returns ``after_status``, or the :class:`Outcome`
        ``retried``, ``failed`` or ``lease lost``.
        """
        mode = check_run_args(before_status, after_status, on_error, force_release, initializer)
        task = self.fetch_task(query, before_status)
        if task is None:
            return None
        return self._run(task, task_func, mode, before_status, after_status, kwargs,
                         force_release, initializer, initargs)[0]

    def run_fetched(
        self,
        task: Record,
        task_func: Callable[..., Any],
        query: Mapping[str, Any] | And | None = None,
        *,
        before_status: str = WAITING,
        after_status: str = DONE,
        on_error: str = OnError.RAISE,
        claim_next: bool = True,
        kwargs: Mapping[str, Any] | None = None,
    ) -> tuple[str, Record | None]:
        """:meth:`run_one` on a task :meth:`fetch_task` returned, then fetch the next one.

        What a worker loop does: when the task function succeeded, its commit and the claim
        of the next task matching ``query`` are one step, which the store may take in one
        transaction (the SQLite store does). Returns the outcome, as :meth:`run_one` does,
        and the next task: None when nothing is claimable, after a failed attempt (fetch it
        then as usual) and without ``claim_next``. Other arguments as for :meth:`run_one`.
        """
        mode = check_run_args(before_status, after_status, on_error, False, None)
        return self._run(task, task_func, mode, before_status, after_status, kwargs, False,
                         None, (), _query(query) if claim_next else None)

    def run_claimable(
        self,
        task_func: Callable[..., Any],
        query: Mapping[str, Any] | None = None,
        *,
        before_status: str = WAITING,
        after_status: str = DONE,
        on_error: str = OnError.RAISE,
        force_release: bool = False,
        kwargs: Mapping[str, Any] | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> int:
        """:meth:`run_one` until no task matching ``query`` is claimable; how many attempts ran.

        Each successful commit claims the next task in the same step, as in
        :meth:`run_fetched`. What the first task loaded is left out of the cycle collector's
        scans until the loop ends (:class:`~taskloom.gctuning.SetupFrozen`). Arguments as for
        :meth:`run_one`.
        """
        mode = check_run_args(before_status, after_status, on_error, force_release, initializer)
        node = normalize(_query(query))  # once: a trainer's query lists every task id
        ran = 0
        task = self._fetch(node, before_status)
        with SetupFrozen() as setup:
            while task is not None:
                _, task = self._run(task, task_func, mode, before_status, after_status, kwargs,
                                    force_release, initializer, initargs, node)
                ran += 1
                setup.settled()
                if task is None:
                    task = self._fetch(node, before_status)
        return ran

    def _run(
        self,
        task: Record,
        task_func: Callable[..., Any],
        mode: OnError,
        before_status: str,
        after_status: str,
        kwargs: Mapping[str, Any] | None,
        force_release: bool,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        claim_next: dict[str, Any] | And | None = None,
    ) -> tuple[str, Record | None]:
        """Run a fetched task and commit it; with ``claim_next`` (a query), fetch the next.

        Returns the outcome and the next task (None without ``claim_next``).
        """
        param = task[RUNNABLE[before_status]]
        log.debug("running task %s (attempt %s): %s", task["_id"], task["attempt"], param)
        data = None
        with self.attempts.hold(task, mode) as held:
            res = call_task(task_func, param, kwargs or {}, force_release=force_release,
                            initializer=initializer, initargs=initargs)
            data = result_json(task, res)
        if held.outcome is not None:
            log.warning("task %s raised %s: %s (%s)", task["_id"], held.error["type"],
                        held.error["message"], held.outcome)
            return held.outcome, None
        if claim_next is not None:
            committed, following = self.attempts.commit_and_claim(
                task, data, after_status, claim_next, before_status)
            return (after_status if committed else Outcome.LEASE_LOST,
                    None if following is None else _typed(following))
        try:
            self.attempts.commit(task, data, after_status)
        except LeaseLostError as exc:
            log.warning("%s", exc)
            return Outcome.LEASE_LOST, None
        return after_status, None

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------

    def query(
        self, query: Mapping[str, Any] | None = None, decode: bool = True
    ) -> Iterator[Record]:
        """The matching tasks in creation order, without their lease tokens.

        ``decode`` is accepted for qlib code; payloads are JSON, so there is nothing to
        decode and the flag changes nothing.
        """
        return (_typed(without_token(task)) for task in self.pool.find(_query(query)))

    def re_query(self, _id: Any) -> Record:
        """The task with this id, without its lease token.

        :class:`UnknownTaskError` (a LookupError) if there is none.
        """
        task = self.pool.get(str(_id))
        if task is None:
            raise UnknownTaskError(f"no task with id {str(_id)!r} in pool {self.task_pool!r}")
        return _typed(without_token(task))

    def task_stat(self, query: Mapping[str, Any] | None = None) -> dict[str, int]:
        """``{status: count}`` over the matching tasks, counted by the store's index."""
        return {status: n for status, n in self.pool.counts(_query(query)).items() if n}

    def wait(
        self,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        poll_seconds: float = 2.0,
        progress: Callable[[dict[str, int]], object] | None = None,
    ) -> dict[str, int]:
        """Block until no matching task is waiting, running or part_done; returns the counts.

        Polls :meth:`task_stat` (cheap) every ``poll_seconds`` and hands each count to
        ``progress`` (``taskloom wait`` draws its progress bar with it). Raises
        :class:`TimeoutError` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stat = self.task_stat(query)
        if _undone(stat):
            log.warning("pool %s: waiting for %d undone tasks", self.task_pool, _undone(stat))
        while True:
            if progress is not None:
                progress(stat)
            if not _undone(stat):
                return stat
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"pool {self.task_pool!r}: {_undone(stat)} tasks still undone after "
                    f"{timeout} s: {stat}"
                )
            pause = poll_seconds
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)
            stat = self.task_stat(query)

    # ----------------------------------------------------------------------------------------
    # Administration
    # ----------------------------------------------------------------------------------------

    def remove(self, query: Mapping[str, Any] | None = None) -> int:
        """Delete the matching tasks; an empty query empties the pool. Returns how many."""
        return self.pool.delete_many(_query(query))

    def reset_status(self, query: Mapping[str, Any] | None, status: str) -> int:
        """Set ``status`` on every matching task (unguarded); returns how many changed.

        Leaving ``running`` clears the lease, so the worker that held it can no longer
        commit. Any retry backoff is cleared too.
        """
        return self.pool.update_many(_query(query), {"status": status, "not_before": None},
                                     time.time())

    def reset_waiting(self, query: Mapping[str, Any] | None = None) -> int:
        """Put tasks back to waiting; without a status in the query, the running ones."""
        q = _query(query)
        if q.get("status") is None:
            q["status"] = RUNNING
        return self.reset_status(q, WAITING)

    def prioritize(self, task: Mapping[str, Any] | str, priority: int) -> None:
        """Set a task's priority (higher is fetched first; never set means 0)."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {priority!r}")
        task_id = task_id_of(task)
        if not self.pool.update_many({"_id": task_id}, {"priority": priority}, time.time()):
            raise UnknownTaskError(f"no task with id {task_id!r} in pool {self.task_pool!r}")

    def retry(self, query: Mapping[str, Any] | None = None) -> int:
        """Put the matching ``failed`` tasks back to waiting with a fresh attempt budget.

        Each gets a history entry with outcome ``"retry"``; returns how many were retried.
        """
        return self.attempts.retry(_query(query))

    def cancel(self, query: Mapping[str, Any] | None = None) -> int:
        """Mark matching tasks ``cancelled``; returns how many.

        Without a status in the query, waiting, part_done and running tasks are cancelled;
        a worker running a cancelled task loses its lease, so its result is rejected.
        """
        q = _query(query)
        if "status" not in q:
            q["status"] = {"$in": list(CANCELLABLE)}
        return self.pool.update_many(q, {"status": CANCELLED, "not_before": None}, time.time())

    def reap(self) -> dict[str, int]:
        """Release every expired lease now instead of at the next claim.

        Each such task goes back to the status it was fetched from, or becomes ``failed``
        when the expiry used up its attempts. Atomic per task: the task is re-claimed only if
        its lease is still expired, so a worker that just renewed keeps it. Returns
        ``{"requeued": n, "failed": m}``.
        """
        return self.attempts.reap()


def _undone(stat: Mapping[str, int]) -> int:
    return sum(stat.get(status, 0) for status in UNDONE)


def run_task(
    task_func: Callable[..., Any],
    task_pool: str,
    query: Mapping[str, Any] | None = None,
    force_release: bool = False,
    before_status: str = WAITING,
    after_status: str = DONE,
    *,
    storage: str | Store | object | None = None,
    on_error: str = OnError.RAISE,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    retry_policy: RetryPolicy | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
    record: str | None = None,
    recorder: str = "mlflow",
    tracking_uri: str | None = None,
    **kwargs: Any,
) -> bool:
    """Run ``task_func`` on matching tasks of ``task_pool`` until none is claimable (qlib).

    ``task_func(param, **kwargs)`` receives the definition of a ``waiting`` task, or the
    stored result of a ``part_done`` one; its JSON result is committed with
    ``after_status`` (``done``, ``part_done`` or a custom status; never ``waiting``,
    ``running``, ``failed`` or ``cancelled``). ``force_release`` runs each task in a fresh
    spawned child process, which ``initializer(*initargs)`` sets up first (``qlib.init()``);
    a script that uses it needs an ``if __name__ == "__main__":`` guard. With the default
    ``on_error="raise"`` the first exception puts its task back and ends the loop, as in
    qlib; ``"retry"`` records it, lets the task wait out its backoff, and goes on. The
    keyword-only options configure taskloom and are not passed to ``task_func``. Returns
    True if at least one task was run.

    ``record="EXPERIMENT"`` runs each task inside a recorded run of that experiment, made by
    the registered ``recorder`` (MLflow by default, into ``tracking_uri`` when given); the
    committed result is then the run's JSON reference (``docs/recording.md``).
    """
    check_run_args(before_status, after_status, on_error, force_release, initializer)
    if record is not None:
        options = {} if tracking_uri is None else {"tracking_uri": tracking_uri}
        run_recorder = lookup("recorder", recorder)(record, **options)
        run_recorder.prepare()
        task_func = run_recorder.wrap(task_func)
    tm = TaskManager(task_pool, storage, lease_seconds=lease_seconds, retry_policy=retry_policy)
    return tm.run_claimable(task_func, query, before_status=before_status,
                            after_status=after_status, on_error=on_error,
                            force_release=force_release, kwargs=kwargs, initializer=initializer,
                            initargs=initargs) > 0
