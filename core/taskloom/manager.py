"""qlib's ``TaskManager`` and ``run_task`` on a taskloom pool, with leases and bounded retries.

The method names, arguments and observable behaviour follow qlib's
``qlib.workflow.task.manage`` (the scripted scenario in ``tests/conformance/taskmanager``
pins them). What changes underneath:

* every fetch is a lease (owner, token, expiry) that a background thread renews while a task
  runs in :meth:`TaskManager.safe_fetch_task`, :meth:`TaskManager.task_fetcher_iter` or
  :func:`run_task`; commits and returns are fenced by the lease token, so a worker whose
  lease expired and whose task was reclaimed cannot overwrite the newer attempt;
* a task whose function raised is retried a bounded number of times, then ``failed`` with
  its traceback and a history of attempts (see :mod:`taskloom.retry`);
* tasks and results are JSON, deduplicated by :func:`taskloom.task_key` under a unique index,
  and counting never decodes payloads.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from pluggy import HookCaller

from taskloom import plugins
from taskloom.errors import LeaseLostError, TaskEncodingError, UnknownTaskError
from taskloom.lease import LeaseKeeper, new_token, owner_id
from taskloom.retry import RetryPolicy, error_info, failures
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
#: what run_task does when the task function raises: qlib's stop, or record and go on
ON_ERROR = ("raise", "retry")
#: statuses run_task can start from, and what the task function then receives
RUNNABLE = {WAITING: "def", PART_DONE: "res"}
#: what TaskManager.cancel cancels when the query names no status
CANCELLABLE = (WAITING, PART_DONE, RUNNING)
#: the error recorded when a task's attempts all ended with an expired lease
LEASE_EXPIRED = "LeaseExpired"


def _query(query: Mapping[str, Any] | None) -> dict[str, Any]:
    """A private copy of a caller's query (qlib mutated the caller's dict)."""
    if query is None:
        return {}
    if not isinstance(query, Mapping):
        raise TypeError(f"a query is a dict, not {type(query).__name__}")
    return dict(query)


def _task_id(task: Mapping[str, Any] | str) -> str:
    if isinstance(task, Mapping):
        if "_id" not in task:
            raise ValueError("a task dict needs an '_id'")
        return str(task["_id"])
    return str(task)


def _token(task: Mapping[str, Any]) -> str | None:
    lease = task.get("lease")
    return lease.get("token") if isinstance(lease, Mapping) else None


def _check_run_args(before_status: str, on_error: str) -> None:
    if before_status not in RUNNABLE:
        raise ValueError(
            f"before_status must be 'waiting' (the task function gets the definition) or "
            f"'part_done' (it gets the stored result), got {before_status!r}"
        )
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def _call(
    task_func: Callable[..., Any], param: Any, kwargs: Mapping[str, Any], force_release: bool
) -> Any:
    """Run the task function, in a fresh child process when ``force_release`` asks for it.

    The child is started with ``spawn`` so it inherits no locks from the lease thread; the
    function must therefore be importable (a module-level function).
    """
    if not force_release:
        return task_func(param, **kwargs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(task_func, param, **kwargs).result()


class TaskManager:
    """One task pool: qlib's TaskManager API over any taskloom store.

    ``task_pool`` names the pool; ``storage`` is a URL, a :class:`~taskloom.storage.Store` or
    a ready client object (``None``: ``TASKLOOM_STORAGE`` or ``sqlite:///taskloom.db``).
    Records returned are the store's records: ``task["_id"]``, ``task["def"]``,
    ``task["status"]``, ``task["res"]`` as in qlib, plus ``priority``, ``attempt``, ``lease``,
    ``attempts`` (the history) and ``error``. With ``create=False`` an unknown pool raises
    :class:`~taskloom.errors.UnknownNameError` instead of being created.
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
        self.store = get_storage(storage)
        self.pool = self.store.pool(task_pool, create=create)
        self.lease_seconds = float(lease_seconds)
        self.retry_policy = retry_policy or RetryPolicy()
        self.owner = owner_id()
        self._keeper = LeaseKeeper(self.pool, self.lease_seconds)
        # with tracing on, every hook call is made so that the trace shows it
        self._trace_hooks = plugins.tracing()

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
        (real or dry) run creates, once.
        """
        # Each task is converted once, to the canonical data the store keeps; its key hashes
        # that data and the store accepts it after a cheap check (Pool.insert_many's contract).
        tasks: list[Any] = []
        defs: list[dict[str, Any]] = []
        for i, task in enumerate(task_def_l):
            try:
                data = to_canonical(task)
            except TaskEncodingError as exc:
                raise TaskEncodingError(
                    f"task {i}: {exc} (tasks are stored as JSON: pass dates, numbers, "
                    "strings, lists and dicts)"
                ) from exc
            if not isinstance(data, dict):
                raise TaskEncodingError(f"task {i}: a task definition is a dict, got {task!r:.80}")
            tasks.append(task)
            defs.append(data)
        keys = [data_key(data) for data in defs]
        if dry_run:
            existing = self.pool.ids_for_keys(keys)
            new = {key: task for key, task in zip(keys, tasks, strict=True) if key not in existing}
            created = list(new.values())
            ids: list[str] = []
        else:
            results = self.pool.insert_many(list(zip(keys, defs, strict=True)), time.time())
            created = [task for task, (_, new_) in zip(tasks, results, strict=True) if new_]
            ids = [task_id for task_id, _ in results]
        if print_nt:
            for task in created:
                print(to_jsonable(task))  # the caller's key order, not the stored one
        log.info("pool %s: total tasks %d, new tasks %d", self.task_pool, len(defs), len(created))
        return ids

    # ----------------------------------------------------------------------------------------
    # Claiming and ending attempts
    # ----------------------------------------------------------------------------------------

    def fetch_task(
        self, query: Mapping[str, Any] | None = None, status: str = WAITING
    ) -> Record | None:
        """Claim the best matching task in ``status`` (highest priority, then oldest).

        The task comes back ``running`` under a lease of ``lease_seconds`` (renew it with
        :meth:`renew`, or use :meth:`safe_fetch_task`, which renews it for you). A task whose
        previous worker vanished is claimable again once its lease expired; if that used up
        its attempts it is marked ``failed`` instead and the next task is claimed.
        None when nothing is claimable.
        """
        q = _query(query)
        while True:
            task = self.pool.claim(
                status=status, query=q, owner=self.owner, token=new_token(),
                lease_seconds=self.lease_seconds, now=time.time(),
            )
            if task is None:
                return None
            if not self._fail_if_expired_out(task):
                break
        self._fire(plugins.hook().taskloom_task_claimed, task=task)
        return task

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
        with self._attempt(task, status):
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
            with self._attempt(task, WAITING):
                yield task

    @contextmanager
    def _attempt(self, task: Record, from_status: str) -> Iterator[None]:
        """Renew the lease while the body runs; end the attempt if the body raises."""
        token = task["lease"]["token"]
        self._keeper.hold(task["_id"], token)
        try:
            yield
        except Exception as exc:
            self._keeper.release(token)
            self._record_error(task, from_status, exc, backoff=False)
            raise
        except BaseException:
            self._keeper.release(token)
            self._give_back(task, from_status)
            raise
        self._keeper.release(token)

    def commit_task_res(self, task: Mapping[str, Any], res: Any, status: str | None = DONE) -> None:
        """Store ``res`` as the task's result and set ``status`` (``None`` means done).

        ``res`` must be JSON data: models, predictions and other artifacts belong in the
        recorder (MLflow), and the result holds a reference to them. A task fetched by this
        or another worker carries its lease; if that lease was lost (expired and reclaimed,
        or reset), :class:`LeaseLostError` is raised and nothing changes. A task dict without
        a lease (``{"_id": id}``) is an administrative, unguarded update.
        """
        status = status or DONE
        data = self._result_json(task, res)
        record = self._end(task, {"status": status, "res": data, "error": None,
                                  "not_before": None}, status, "commit")
        self._fire(plugins.hook().taskloom_task_finished, task=record, status=status)

    def return_task(self, task: Mapping[str, Any], status: str | None = WAITING) -> None:
        """Put a fetched task back in ``status`` (``None`` means waiting), claimable at once.

        Fenced like :meth:`commit_task_res`; the stored result is kept.
        """
        self._end(task, {"status": status or WAITING, "not_before": None}, "returned", "return")

    def renew(self, task: Mapping[str, Any]) -> None:
        """Extend a fetched task's lease by ``lease_seconds`` from now.

        For code that uses :meth:`fetch_task` directly and works longer than a lease;
        raises :class:`LeaseLostError` if the lease is already gone.
        """
        token = _token(task)
        if token is None:
            raise ValueError(f"task {_task_id(task)} carries no lease: fetch it first")
        now = time.time()
        if not self.pool.heartbeat(_task_id(task), token, now + self.lease_seconds, now):
            raise self._lost(task, "renewal")

    def _end(
        self, task: Mapping[str, Any], changes: dict[str, Any], outcome: str, action: str
    ) -> Record:
        """Apply an attempt's end: fenced by the task's lease token, unguarded without one."""
        task_id = _task_id(task)
        token = _token(task)
        now = time.time()
        if token is None:
            if not self.pool.update_many({"_id": task_id}, changes, now):
                raise UnknownTaskError(f"no task with id {task_id!r} in pool {self.task_pool!r}")
            record = self.pool.get(task_id)
            if record is None:
                raise UnknownTaskError(f"task {task_id!r} was removed from {self.task_pool!r}")
            return record
        if self._keeper.is_lost(token):
            raise self._lost(task, action)
        record = self.pool.finish(task_id, token, changes, self._history(task, now, outcome), now)
        if record is None:
            raise self._lost(task, action)
        return record

    def _fire(self, hook: HookCaller, **kwargs: Any) -> None:
        """Call a lifecycle hook of this pool, unless no plugin implements it.

        A pluggy call costs microseconds even with no implementation, as much as the rest of
        a no-op task's bookkeeping, so a pool without observers skips it. With tracing on
        (``TASKLOOM_TRACE_PLUGINS``) every call is made, so that the trace shows it.
        """
        if self._trace_hooks or hook.get_hookimpls():
            hook(pool=self.task_pool, **kwargs)

    def _lost(self, task: Mapping[str, Any], action: str) -> LeaseLostError:
        lease = task.get("lease") or {}
        return LeaseLostError(
            f"task {_task_id(task)}: the lease of attempt {task.get('attempt', '?')} held by "
            f"{lease.get('owner', '?')} was lost (it expired and the task was reclaimed, or an "
            f"administrator reset it); this {action} was rejected and nothing changed"
        )

    @staticmethod
    def _history(task: Mapping[str, Any], now: float, outcome: str, **extra: Any) -> dict:
        lease = task.get("lease") or {}
        return {"attempt": task.get("attempt"), "owner": lease.get("owner"),
                "started": lease.get("started"), "ended": now, "outcome": outcome, **extra}

    def _result_json(self, task: Mapping[str, Any], res: Any) -> Any:
        try:
            return to_jsonable(res)
        except TaskEncodingError as exc:
            raise TaskEncodingError(
                f"task {_task_id(task)}: the result is not JSON data ({exc}); results are "
                "stored as JSON, so log models, predictions and other artifacts with the "
                "recorder (MLflow) and return a reference, e.g. the run id and a few metrics"
            ) from exc

    def _record_error(
        self, task: Record, from_status: str, exc: BaseException, backoff: bool
    ) -> str:
        """End an attempt whose function raised: retry it, or fail it when out of attempts.

        Returns ``"retried"``, ``"failed"`` or ``"lease lost"`` (nothing recorded then).
        """
        error = error_info(exc)
        now = time.time()
        n_failed = failures(task["attempts"]) + 1
        entry = self._history(task, now, "error",
                              error={"type": error["type"], "message": error["message"]})
        token = task["lease"]["token"]
        if n_failed >= self.retry_policy.max_attempts:
            record = self.pool.finish(task["_id"], token, {"status": FAILED, "error": error,
                                                           "not_before": None}, entry, now)
            if record is not None:
                self._fire(plugins.hook().taskloom_task_failed, task=record, error=error)
                return "failed"
        else:
            delay = self.retry_policy.delay(n_failed) if backoff else 0.0
            changes = {"status": from_status, "error": error,
                       "not_before": now + delay if delay else None}
            record = self.pool.finish(task["_id"], token, changes, entry, now)
            if record is not None:
                self._fire(plugins.hook().taskloom_task_retried, task=record, error=error,
                           delay=delay)
                return "retried"
        log.warning("task %s: lease lost before its error could be recorded", task["_id"])
        return "lease lost"

    def _give_back(self, task: Record, from_status: str) -> None:
        """Return a task on interruption (shutdown, abandoned iterator); not a failed attempt."""
        now = time.time()
        record = self.pool.finish(task["_id"], task["lease"]["token"],
                                  {"status": from_status, "not_before": None},
                                  self._history(task, now, "returned"), now)
        if record is None:
            log.debug("task %s was already committed or reclaimed", task["_id"])

    def _fail_if_expired_out(self, task: Record) -> bool:
        """Fail a just-reclaimed task whose expired attempts used up its budget.

        The claim that reclaimed it is undone (``attempt`` restored, no history entry):
        the task never ran again. Returns True when the task was failed.
        """
        history = task["attempts"]
        if not history or history[-1].get("outcome") != "lease expired":
            return False
        if history[-1].get("attempt") != task["attempt"] - 1:
            return False  # the expiry was recorded by an earlier claim
        n_failed = failures(history)
        if n_failed < self.retry_policy.max_attempts:
            return False
        last = history[-1]
        error = {
            "type": LEASE_EXPIRED,
            "message": f"attempt {last.get('attempt')} by {last.get('owner')} ended without a "
                       f"result: its lease expired (the worker died or stalled); {n_failed} "
                       f"failed attempts, max_attempts={self.retry_policy.max_attempts}",
            "traceback": "",
        }
        now = time.time()
        record = self.pool.finish(
            task["_id"], task["lease"]["token"],
            {"status": FAILED, "error": error, "not_before": None, "attempt": task["attempt"] - 1},
            None, now,
        )
        if record is not None:
            self._fire(plugins.hook().taskloom_task_failed, task=record, error=error)
        return True

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
        on_error: str = "raise",
        force_release: bool = False,
        kwargs: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Claim one task, run ``task_func`` on it, and commit; None when nothing is claimable.

        ``task_func(param, **kwargs)`` gets the definition for a ``waiting`` task and the
        stored result for a ``part_done`` one. If it raises, the attempt is recorded: with
        ``on_error="raise"`` (qlib) the task is claimable again at once and the exception
        propagates; with ``"retry"`` the task waits out the policy's backoff and this call
        returns. Either way the last allowed attempt marks the task ``failed``. Returns the
        outcome: ``after_status``, ``"retried"``, ``"failed"`` or ``"lease lost"``.
        """
        _check_run_args(before_status, on_error)
        task = self.fetch_task(query, before_status)
        if task is None:
            return None
        param = task[RUNNABLE[before_status]]
        log.debug("running task %s (attempt %s): %s", task["_id"], task["attempt"], param)
        token = task["lease"]["token"]
        self._keeper.hold(task["_id"], token)
        try:
            data = self._result_json(task, _call(task_func, param, kwargs or {}, force_release))
        except Exception as exc:
            self._keeper.release(token)
            outcome = self._record_error(task, before_status, exc, backoff=on_error == "retry")
            if on_error == "raise":
                raise
            log.warning("task %s raised %s: %s (%s)", task["_id"], type(exc).__name__, exc,
                        outcome)
            return outcome
        except BaseException:
            self._keeper.release(token)
            self._give_back(task, before_status)
            raise
        self._keeper.release(token)
        try:
            record = self._end(task, {"status": after_status, "res": data, "error": None,
                                      "not_before": None}, after_status, "commit")
        except LeaseLostError as exc:
            log.warning("%s", exc)
            return "lease lost"
        self._fire(plugins.hook().taskloom_task_finished, task=record, status=after_status)
        return after_status

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------

    def query(
        self, query: Mapping[str, Any] | None = None, decode: bool = True
    ) -> Iterator[Record]:
        """The matching tasks in creation order.

        ``decode`` is accepted for qlib code; payloads are JSON, so there is nothing to
        decode and the flag changes nothing.
        """
        return self.pool.find(_query(query))

    def re_query(self, _id: Any) -> Record:
        """The task with this id; :class:`UnknownTaskError` (a LookupError) if there is none."""
        task = self.pool.get(str(_id))
        if task is None:
            raise UnknownTaskError(f"no task with id {str(_id)!r} in pool {self.task_pool!r}")
        return task

    def task_stat(self, query: Mapping[str, Any] | None = None) -> dict[str, int]:
        """``{status: count}`` over the matching tasks, counted by the store's index."""
        return {status: n for status, n in self.pool.counts(_query(query)).items() if n}

    def wait(
        self,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        poll_seconds: float = 2.0,
    ) -> dict[str, int]:
        """Block until no matching task is waiting, running or part_done; returns the counts.

        Polls :meth:`task_stat` (cheap) every ``poll_seconds`` and shows a progress bar when
        stderr is a terminal. Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        from rich.console import Console
        from rich.progress import Progress

        deadline = None if timeout is None else time.monotonic() + timeout
        stat = self.task_stat(query)
        if not _undone(stat):
            return stat
        log.warning("pool %s: waiting for %d undone tasks", self.task_pool, _undone(stat))
        console = Console(stderr=True)
        with Progress(console=console, disable=not console.is_terminal) as progress:
            bar = progress.add_task(f"{self.task_pool}", total=sum(stat.values()))
            while _undone(stat):
                progress.update(bar, total=sum(stat.values()),
                                completed=sum(stat.values()) - _undone(stat))
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
            progress.update(bar, completed=sum(stat.values()))
        return stat

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
        task_id = _task_id(task)
        if not self.pool.update_many({"_id": task_id}, {"priority": priority}, time.time()):
            raise UnknownTaskError(f"no task with id {task_id!r} in pool {self.task_pool!r}")

    def retry(self, query: Mapping[str, Any] | None = None) -> int:
        """Put the matching ``failed`` tasks back to waiting with a fresh attempt budget.

        Each gets a history entry with outcome ``"retry"``; returns how many were retried.
        """
        now = time.time()
        count = 0
        for task in list(self.pool.find({"$and": [_query(query), {"status": FAILED}]})):
            history = [*task["attempts"], {"outcome": "retry", "ended": now}]
            count += self.pool.update_many(
                {"_id": task["_id"], "status": FAILED},
                {"status": WAITING, "error": None, "not_before": None, "attempts": history},
                now,
            )
        return count

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
        out = {"requeued": 0, "failed": 0}
        now = time.time()
        expired = {"status": RUNNING, "lease.until": {"$lt": now}}
        for stale in list(self.pool.find(expired)):
            task = self.pool.claim(
                status=stale["lease"]["from_status"],
                query={"_id": stale["_id"], "lease.until": {"$lt": now}},
                owner=self.owner, token=new_token(), lease_seconds=self.lease_seconds, now=now,
            )
            if task is None:
                continue
            if self._fail_if_expired_out(task):
                out["failed"] += 1
                continue
            self.pool.finish(
                task["_id"], task["lease"]["token"],
                {"status": task["lease"]["from_status"], "attempt": task["attempt"] - 1},
                None, now,
            )
            out["requeued"] += 1
        return out


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
    on_error: str = "raise",
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    retry_policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> bool:
    """Run ``task_func`` on matching tasks of ``task_pool`` until none is claimable (qlib).

    ``task_func(param, **kwargs)`` receives the definition of a ``waiting`` task, or the
    stored result of a ``part_done`` one; its JSON result is committed with
    ``after_status``. ``force_release`` runs each task in a fresh child process. With the
    default ``on_error="raise"`` the first exception puts its task back and ends the loop,
    as in qlib; ``"retry"`` records it, lets the task wait out its backoff, and goes on.
    The keyword-only options configure taskloom and are not passed to ``task_func``.
    Returns True if at least one task was run.
    """
    _check_run_args(before_status, on_error)
    tm = TaskManager(task_pool, storage, lease_seconds=lease_seconds, retry_policy=retry_policy)
    ever_run = False
    while tm.run_one(task_func, query, before_status=before_status, after_status=after_status,
                     on_error=on_error, force_release=force_release, kwargs=kwargs) is not None:
        ever_run = True
    return ever_run
