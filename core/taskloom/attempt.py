"""One attempt at a task: claimed under a lease, held while its work runs, ended exactly once.

::

    claim ──► hold (lease renewed) ──┬─ commit ─────────────► after_status (history: that status)
                                     ├─ the work raised ────► retried or failed (history: error)
                                     ├─ interrupted ────────► given back      (history: returned)
                                     └─ lease lost ─────────► nothing changes (a newer attempt
                                                              or an administrator owns the task)
    a lease that expires ──► claimed again or reaped  (history: lease expired)

:class:`Attempts` is this state machine for one pool and one lease owner. TaskManager's qlib
API (fetch_task, safe_fetch_task, task_fetcher_iter, commit_task_res, return_task, run_task)
and the worker are built on it, and :meth:`Attempts.hold` is the one place where a running
attempt's lease is renewed and where an exception or an interruption ends it. Outcomes are
:class:`~taskloom.outcome.Outcome` members; the retry budget is :mod:`taskloom.retry`'s.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pluggy import HookCaller

from taskloom import plugins
from taskloom.errors import LeaseLostError, TaskEncodingError, TaskloomError, UnknownTaskError
from taskloom.lease import LeaseKeeper, new_token, owner_id
from taskloom.outcome import Outcome
from taskloom.query import And
from taskloom.retry import RetryPolicy, error_info, failures
from taskloom.running import RunningTask, current_task, running
from taskloom.status import FAILED, PART_DONE, RUNNING, WAITING
from taskloom.storage import Pool, Record
from taskloom.taskkey import to_jsonable

log = logging.getLogger(__name__)

#: the error type recorded when a task's attempts all ended with an expired lease
LEASE_EXPIRED_ERROR = "LeaseExpired"
#: statuses a task function can start from, and the record field it then receives
RUNNABLE: dict[str, str] = {WAITING: "def", PART_DONE: "res"}


class OnError(StrEnum):
    """What a task run does when its task function raises; the failure is recorded either way."""

    #: qlib: the task is claimable again at once and the exception propagates
    RAISE = "raise"
    #: the task waits out the retry backoff and the run carries on
    RETRY = "retry"


class TaskFunctionExit(TaskloomError):
    """A task function called ``sys.exit()``: a failed attempt like any error, not a way out.

    Without this, a handler's ``sys.exit()`` would end the worker, give the task back
    uncounted, and every worker that claimed it next would end the same way.
    """


@dataclass
class Held:
    """A task under :meth:`Attempts.hold`; if the block raised, how the attempt ended."""

    task: Record
    #: RETRIED, FAILED or LEASE_LOST once the block raised an Exception; None otherwise
    outcome: Outcome | None = None
    #: the recorded ``{type, message, traceback}`` of that exception
    error: dict[str, str] | None = None


def task_id_of(task: Mapping[str, Any] | str) -> str:
    """The id of a task given as a record, a ``{"_id": id}`` dict or a bare id string."""
    if type(task) is dict or isinstance(task, Mapping):
        if "_id" not in task:
            raise ValueError(f"a task dict needs an '_id', got keys {sorted(task)}")
        return str(task["_id"])
    return str(task)


def lease_token(task: Mapping[str, Any] | str) -> str | None:
    """The lease token a fetched task carries; None for a bare id or a record read back."""
    if type(task) is not dict and not isinstance(task, Mapping):
        return None
    lease = task.get("lease")
    if type(lease) is dict or isinstance(lease, Mapping):
        return lease.get("token")
    return None


def without_token(record: Record) -> Record:
    """The record with its lease token removed; owner, expiry and start stay visible.

    Only the claimer gets the token: it is what lets a commit or a return through the fence,
    so a reader (``query``, ``re_query``, a lifecycle hook) must not be able to act as the
    worker that holds the task.
    """
    lease = record.get("lease")
    if isinstance(lease, Mapping) and "token" in lease:
        record = {**record, "lease": {k: v for k, v in lease.items() if k != "token"}}
    return record


def result_json(task: Mapping[str, Any] | str, res: Any) -> Any:
    """``res`` as the JSON data a commit stores; a TaskEncodingError names the task and path."""
    try:
        return to_jsonable(res)
    except TaskEncodingError as exc:
        raise TaskEncodingError(
            f"task {task_id_of(task)}: the result is not JSON data ({exc}); results are "
            "stored as JSON, so log models, predictions and other artifacts with the "
            "recorder (MLflow) and return a reference, e.g. the run id and a few metrics"
        ) from exc


def call_task(
    task_func: Callable[..., Any],
    param: Any,
    kwargs: Mapping[str, Any],
    *,
    force_release: bool = False,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Any:
    """Run ``task_func(param, **kwargs)``, in a fresh child process when ``force_release``.

    The child is started with ``spawn``, so it inherits no locks from the lease thread and no
    set-up of this process: ``initializer(*initargs)`` runs in it first (``qlib.init()``...),
    and the function, the initializer and their arguments must be picklable (module-level
    functions). The child runs under this process's :func:`~taskloom.running.current_task`.
    A ``sys.exit()`` in the function, here or in the child, becomes a
    :class:`TaskFunctionExit`.
    """
    try:
        if not force_release:
            return task_func(param, **kwargs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
            job = executor.submit(_run_in_child, task_func, param, dict(kwargs), initializer,
                                  initargs, current_task())
            return job.result()
    except SystemExit as exc:
        raise TaskFunctionExit(
            f"the task function called sys.exit({exc.code!r}); a task fails by raising an "
            "exception, and this attempt is counted as failed"
        ) from exc


def _run_in_child(
    task_func: Callable[..., Any],
    param: Any,
    kwargs: dict[str, Any],
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    task: RunningTask | None = None,
) -> Any:
    """The child's job under ``force_release``: set the process up, then run the task.

    Called here rather than as the executor's ``initializer=`` so that an initializer that
    raises is recorded as the attempt's error with its own traceback, not as a broken pool.
    """
    if initializer is not None:
        initializer(*initargs)
    with running(task):
        return task_func(param, **kwargs)


class Attempts:
    """The attempt state machine of one pool for one lease owner (a TaskManager, a worker).

    Claims are leases of ``lease_seconds``, renewed from one background thread while a task is
    held. ``retry_policy`` bounds the failed attempts of a task and spaces its retries.
    ``storage`` (the URL of the pool's store, when known) is what a held task's
    :class:`~taskloom.running.RunningTask` reports.
    """

    def __init__(self, pool: Pool, *, lease_seconds: float, retry_policy: RetryPolicy,
                 storage: str | None = None) -> None:
        self.pool = pool
        self.storage = storage
        self.lease_seconds = lease_seconds
        self.retry_policy = retry_policy
        self.owner = owner_id()
        self._keeper = LeaseKeeper(pool, lease_seconds)
        # with tracing on, every hook call is made so that the trace shows it
        self._trace_hooks = plugins.tracing()
        # the process's hook relay: plugins registered later join its hooks, so it is looked
        # up once instead of on every claim and commit
        self._hooks = plugins.hook()

    # ----------------------------------------------------------------------------------------
    # claiming and holding
    # ----------------------------------------------------------------------------------------

    def claim(self, query: dict[str, Any] | And, status: str) -> Record | None:
        """Claim the best matching task in ``status`` under a new lease; None if none is left.

        A task reclaimed after its lease expired is marked ``failed`` instead when that
        expiry used up its attempts, and the next task is claimed.
        """
        task = self.pool.claim(
            status=status, query=query, owner=self.owner, token=new_token(),
            lease_seconds=self.lease_seconds, now=time.time(),
        )
        return self._claimed(task, query, status)

    def _claimed(self, task: Record | None, query: dict[str, Any] | And,
                 status: str) -> Record | None:
        """A task a claim returned, once it is known not to be expired out (see :meth:`claim`)."""
        while task is not None and self._fail_if_expired_out(task):
            task = self.pool.claim(
                status=status, query=query, owner=self.owner, token=new_token(),
                lease_seconds=self.lease_seconds, now=time.time(),
            )
        if task is not None:
            self._fire(self._hooks.taskloom_task_claimed, task=task)
        return task

    @contextmanager
    def hold(self, task: Record, on_error: OnError = OnError.RAISE) -> Iterator[Held]:
        """Keep a claimed task's lease renewed while the block runs; end the attempt if it raises.

        An ``Exception`` is a failed attempt: the task goes back to the status it was claimed
        from (at once with ``OnError.RAISE``, after the backoff with ``OnError.RETRY``), or
        becomes ``failed`` when that was its last allowed attempt. ``RAISE`` re-raises the
        very same exception; ``RETRY`` swallows it and leaves the outcome on the yielded
        :class:`Held`. Any other BaseException (KeyboardInterrupt, a worker's stop request, a
        closed generator) gives the task back uncounted and propagates. A block that ends
        normally leaves the task to the caller: commit it, or leave it running (qlib). While
        the block runs, :func:`taskloom.running.current_task` names this attempt.
        """
        token = task["lease"]["token"]
        held = Held(task)
        lease = task["lease"]
        now_running = RunningTask(self.pool.name, task["_id"], task["key"], task["attempt"],
                                  lease["owner"], self.storage, lease.get("started"),
                                  lease.get("until"))
        self._keeper.hold(task["_id"], token)
        try:
            with running(now_running):
                yield held
        except Exception as exc:
            self._keeper.release(token)
            held.error = error_info(exc)
            held.outcome = self._record_error(task, held.error,
                                              backoff=on_error == OnError.RETRY)
            if on_error == OnError.RAISE:
                raise
        except BaseException:
            self._keeper.release(token)
            self._give_back_interrupted(task)
            raise
        else:
            self._keeper.release(token)

    def renew(self, task: Mapping[str, Any]) -> None:
        """Extend a fetched task's lease by ``lease_seconds`` from now; LeaseLostError if gone."""
        token = lease_token(task)
        if token is None:
            raise ValueError(f"task {task_id_of(task)} carries no lease: fetch it first")
        now = time.time()
        if not self.pool.heartbeat(task_id_of(task), token, now + self.lease_seconds, now):
            raise self._lost(task, "renewal")

    # ----------------------------------------------------------------------------------------
    # ending an attempt
    # ----------------------------------------------------------------------------------------

    def commit(self, task: Mapping[str, Any] | str, data: Any, status: str) -> None:
        """Store the JSON result ``data`` with ``status``; the history outcome is the status.

        Fenced by the task's lease token (:class:`LeaseLostError` if it was lost); a task
        without one (``{"_id": id}`` or a bare id) is an unguarded, administrative update.
        The record is read back only when a ``taskloom_task_finished`` hook observes it.
        """
        finished = self._hooks.taskloom_task_finished
        record = self._end(task, _commit_changes(data, status), status, "commit",
                           read_back=self._observed(finished))
        if record is not None:
            self._fire(finished, task=record, status=status)

    def commit_and_claim(
        self, task: Record, data: Any, status: str, query: dict[str, Any] | And,
        claim_status: str,
    ) -> tuple[bool, Record | None]:
        """:meth:`commit` a fetched task, then :meth:`claim` the next: ``(committed, next)``.

        For a worker going straight on to its next task: the store may do both in one
        transaction. A lost lease does not raise: ``committed`` is False and nothing was
        written for that task (the claim still happens). When a ``taskloom_task_finished``
        hook observes the committed record, or the lease is already known lost, the two
        steps are taken one after the other.
        """
        token = task["lease"]["token"]
        if self._observed(self._hooks.taskloom_task_finished) or self._keeper.is_lost(token):
            try:
                self.commit(task, data, status)
            except LeaseLostError as exc:
                log.warning("%s", exc)
                return False, self.claim(query, claim_status)
            return True, self.claim(query, claim_status)
        now = time.time()
        committed, claimed = self.pool.end_and_claim(
            task["_id"], token, _commit_changes(data, status), _history(task, now, status),
            status=claim_status, query=query, owner=self.owner, new_token=new_token(),
            lease_seconds=self.lease_seconds, now=now,
        )
        if not committed:
            log.warning("%s", self._lost(task, "commit"))
        return committed, self._claimed(claimed, query, claim_status)

    def give_back(self, task: Mapping[str, Any] | str, status: str) -> None:
        """Put a task back in ``status``, claimable at once, uncounted (history: returned).

        Fenced like :meth:`commit`; the stored result is kept.
        """
        self._end(task, {"status": status, "not_before": None}, Outcome.RETURNED, "return",
                  read_back=False)

    def _give_back_interrupted(self, task: Record) -> None:
        """Give back a task whose holder was interrupted; a lost lease is only logged."""
        now = time.time()
        record = self.pool.finish(task["_id"], task["lease"]["token"],
                                  {"status": task["lease"]["from_status"], "not_before": None},
                                  _history(task, now, Outcome.RETURNED), now)
        if record is None:
            log.debug("task %s was already committed or reclaimed", task["_id"])

    def _record_error(self, task: Record, error: dict[str, str], backoff: bool) -> Outcome:
        """End an attempt whose work raised: retry the task, or fail it when out of attempts.

        Returns RETRIED, FAILED, or LEASE_LOST when the lease was gone (nothing recorded).
        """
        now = time.time()
        n_failed = failures(task["attempts"]) + 1
        entry = _history(task, now, Outcome.ERROR,
                         error={"type": error["type"], "message": error["message"]})
        token = task["lease"]["token"]
        if n_failed >= self.retry_policy.max_attempts:
            record = self.pool.finish(task["_id"], token, {"status": FAILED, "error": error,
                                                           "not_before": None}, entry, now)
            if record is not None:
                self._fire(self._hooks.taskloom_task_failed, task=record,
                           error=error)
                return Outcome.FAILED
        else:
            delay = self.retry_policy.delay(n_failed) if backoff else 0.0
            changes = {"status": task["lease"]["from_status"], "error": error,
                       "not_before": now + delay if delay else None}
            record = self.pool.finish(task["_id"], token, changes, entry, now)
            if record is not None:
                self._fire(self._hooks.taskloom_task_retried, task=record,
                           error=error, delay=delay)
                return Outcome.RETRIED
        log.warning("task %s: lease lost before its error could be recorded", task["_id"])
        return Outcome.LEASE_LOST

    def _end(
        self,
        task: Mapping[str, Any] | str,
        changes: dict[str, Any],
        outcome: str,
        action: str,
        read_back: bool,
    ) -> Record | None:
        """Apply an attempt's end: fenced by the task's lease token, unguarded without one.

        Returns the record after the change; a fenced end returns None unless ``read_back``.
        """
        task_id = task_id_of(task)
        token = lease_token(task)
        now = time.time()
        if token is None:
            if not self.pool.update_many({"_id": task_id}, changes, now):
                raise UnknownTaskError(f"no task with id {task_id!r} in pool {self.pool.name!r}")
            record = self.pool.get(task_id)
            if record is None:
                raise UnknownTaskError(f"task {task_id!r} was removed from {self.pool.name!r}")
            return record
        if self._keeper.is_lost(token):
            raise self._lost(task, action)
        entry = _history(task, now, outcome)
        if not read_back:
            if not self.pool.end(task_id, token, changes, entry, now):
                raise self._lost(task, action)
            return None
        record = self.pool.finish(task_id, token, changes, entry, now)
        if record is None:
            raise self._lost(task, action)
        return record

    # ----------------------------------------------------------------------------------------
    # expired leases and the attempt budget
    # ----------------------------------------------------------------------------------------

    def _fail_if_expired_out(self, task: Record) -> bool:
        """Fail a just-reclaimed task whose expired attempts used up its budget.

        The claim that reclaimed it is undone (``attempt`` restored, no history entry):
        the task never ran again. Returns True when the task was failed.
        """
        history = task["attempts"]
        if not history or history[-1].get("outcome") != Outcome.LEASE_EXPIRED:
            return False
        if history[-1].get("attempt") != task["attempt"] - 1:
            return False  # the expiry was recorded by an earlier claim
        n_failed = failures(history)
        if n_failed < self.retry_policy.max_attempts:
            return False
        last = history[-1]
        error = {
            "type": LEASE_EXPIRED_ERROR,
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
            self._fire(self._hooks.taskloom_task_failed, task=record,
                       error=error)
        return True

    def reap(self) -> dict[str, int]:
        """Release every expired lease now; ``{"requeued": n, "failed": m}``.

        Each task is re-claimed only while its lease is still expired (so a worker that just
        renewed keeps it), then goes back to the status it was fetched from, or becomes
        ``failed`` when the expiry used up its attempts.
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

    def retry(self, query: dict[str, Any]) -> int:
        """Put the matching ``failed`` tasks back to waiting with a fresh attempt budget.

        Each gets a history entry with outcome RETRY; returns how many were retried.
        """
        now = time.time()
        count = 0
        for task in list(self.pool.find({"$and": [query, {"status": FAILED}]})):
            history = [*task["attempts"], {"outcome": Outcome.RETRY, "ended": now}]
            count += self.pool.update_many(
                {"_id": task["_id"], "status": FAILED},
                {"status": WAITING, "error": None, "not_before": None, "attempts": history},
                now,
            )
        return count

    # ----------------------------------------------------------------------------------------
    # helpers
    # ----------------------------------------------------------------------------------------

    def _fire(self, hook: HookCaller, task: Record, **kwargs: Any) -> None:
        """Call a lifecycle hook of this pool with ``task`` minus its lease token, if observed.

        A pluggy call costs microseconds even with no implementation, as much as the rest of
        a no-op task's bookkeeping, so a pool without observers skips it (and the copy without
        the token). With tracing on (``TASKLOOM_TRACE_PLUGINS``) every call is made, so that
        the trace shows it.
        """
        if self._observed(hook):
            hook(pool=self.pool.name, task=without_token(task), **kwargs)

    def _observed(self, hook: HookCaller) -> bool:
        """Whether a call of this lifecycle hook is to be made (see :meth:`_fire`)."""
        return self._trace_hooks or bool(hook.get_hookimpls())

    def _lost(self, task: Mapping[str, Any] | str, action: str) -> LeaseLostError:
        """The error for an ``action`` on a task whose lease is gone, naming task and holder."""
        record = task if isinstance(task, Mapping) else {}
        lease = record.get("lease") or {}
        return LeaseLostError(
            f"task {task_id_of(task)}: the lease of attempt {record.get('attempt', '?')} held by "
            f"{lease.get('owner', '?')} was lost (it expired and the task was reclaimed, or an "
            f"administrator reset it); this {action} was rejected and nothing changed"
        )


def _commit_changes(data: Any, status: str) -> dict[str, Any]:
    """What a commit writes: the result and status, no error, no backoff.

    The status as a plain string: a ``TaskStatus`` member would cost the store a conversion
    per task.
    """
    return {"status": str(status), "res": data, "error": None, "not_before": None}


def _history(task: Mapping[str, Any], now: float, outcome: str, **extra: Any) -> dict[str, Any]:
    """The history entry that ends the attempt a fetched ``task`` holds.

    Keys in sorted order and the outcome as a plain string: the canonical form the pool
    stores, which it then need not convert.
    """
    lease = task.get("lease") or {}
    return {"attempt": task.get("attempt"), "ended": now, **extra, "outcome": str(outcome),
            "owner": lease.get("owner"), "started": lease.get("started")}

