"""Running background tasks in threads of the web app's process.

How a page starts a task (e.g. a re-scan of the quarantine):

1. Its router factory receives the app's one ``TaskRunner`` (admin_ui.app creates it) and
   registers the kind once: ``tasks.register("quarantine-rescan", rescan_work)``, where
   ``rescan_work(ctx: TaskContext) -> Mapping[str, Any]`` does the work.
2. The POST handler (CSRF-checked, rights checked as for any change) calls
   ``task_id = tasks.start("quarantine-rescan", staff.username, {"ids": [...]})`` and answers
   with a redirect to ``/console/tasks/{task_id}``, the page that shows the progress (it
   refreshes itself while the task runs) and the result.
3. The work function opens its own transactions, one per step, through ``ctx.sessions``
   (``with session_scope(ctx.sessions) as session: ...``), records its changes in the audit
   trail there with the acting user (``ctx.started_by``), and calls
   ``ctx.progress(done, total, message)`` after each step. What it returns (plain JSON
   values, never content) is stored as the result; what it raises is stored as the error.
   A page may show a kind's result with its own template ``tasks/result_<kind>.html``.

A task whose process ended (a crash, a restart) falls silent: ``recover()`` (run when the app
starts) and every reader (gateway.tasks.views) show it as interrupted once its heartbeat is
older than ``stale_after``. The runner beats for each of its running tasks on every progress
call and every quarter of ``stale_after`` in between, so a long step is not taken for dead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.clock import Clock
from gateway.db import session_scope
from gateway.tasks.models import BackgroundTask, TaskState

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=60)
WORKERS = 2

Progress = Callable[[int, "int | None", str], None]


@dataclass(frozen=True)
class TaskContext:
    task_id: int
    kind: str
    started_by: str
    params: Mapping[str, Any]
    sessions: sessionmaker[Session]
    clock: Clock
    # progress(done, total, message): how far the task is; total None while unknown.
    progress: Progress


TaskWork = Callable[[TaskContext], Mapping[str, Any]]


class UnknownTaskKind(ValueError):
    pass


def to_json(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True, ensure_ascii=False, default=str)


class TaskRunner:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *,
                 workers: int = WORKERS, stale_after: timedelta = STALE_AFTER) -> None:
        self.sessions = sessions
        self.clock = clock
        self.stale_after = stale_after
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._workers = workers
        self._kinds: dict[str, TaskWork] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._beater: threading.Thread | None = None

    def register(self, kind: str, work: TaskWork) -> None:
        if kind in self._kinds and self._kinds[kind] is not work:
            raise ValueError(f"task kind {kind!r} is registered already")
        self._kinds[kind] = work

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)

    # --- lifecycle ----------------------------------------------------------------------------

    def begin(self) -> None:
        """Start the threads and mark the tasks that a previous process left as interrupted.

        A database that cannot be reached does not stop the web app from starting (its
        health check says so); such tasks are shown interrupted anyway once their heartbeat
        is old, which reading them checks."""
        try:
            self.recover()
        except SQLAlchemyError as exc:
            log.warning("background tasks: database unavailable at start, nothing "
                        "recovered: %s", type(exc).__name__)
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="task")
        self._beater = threading.Thread(target=self._beat_loop, name="task-heartbeat",
                                        daemon=True)
        self._beater.start()

    def stop(self) -> None:
        """Wait for the running tasks; tasks not yet begun stay as they are and are shown
        interrupted once they fall silent."""
        self._stopping.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._beater is not None:
            self._beater.join()
            self._beater = None

    def recover(self) -> int:
        """Mark running tasks whose heartbeat is older than ``stale_after`` as interrupted;
        returns how many."""
        now = self.clock()
        with session_scope(self.sessions) as session:
            result = session.execute(
                update(BackgroundTask)
                .where(BackgroundTask.state == TaskState.RUNNING,
                       BackgroundTask.heartbeat_at < now - self.stale_after)
                .values(state=TaskState.INTERRUPTED, finished_at=now))
            count: int = getattr(result, "rowcount", 0) or 0
        if count:
            log.warning("%d background task(s) left by an ended process marked interrupted",
                        count)
        return count

    # --- starting and waiting ------------------------------------------------------------------

    def start(self, kind: str, started_by: str, params: Mapping[str, Any]) -> int:
        """Record a task and run it in the background; returns its id."""
        work = self._kinds.get(kind)
        if work is None:
            raise UnknownTaskKind(f"no background task of kind {kind!r}")
        if self._pool is None:
            raise RuntimeError("the task runner is not running (begin() it first)")
        now = self.clock()
        text = to_json(params)
        with session_scope(self.sessions) as session:
            task = BackgroundTask(kind=kind, started_by=started_by, params=text,
                                  state=TaskState.RUNNING, done=0, total=None, message="",
                                  owner=self.owner, started_at=now, heartbeat_at=now)
            session.add(task)
            session.flush()
            task_id = task.id
        context = TaskContext(task_id, kind, started_by, json.loads(text), self.sessions,
                              self.clock, self._progress_of(task_id))
        with self._lock:
            self._futures[task_id] = self._pool.submit(self._run, work, context)
        return task_id

    def wait(self, task_id: int, timeout: float = 30) -> None:
        """Wait until a task of this runner has ended (for tests and the CLI)."""
        with self._lock:
            future = self._futures.get(task_id)
        if future is not None:
            future.result(timeout=timeout)

    # --- inside the threads --------------------------------------------------------------------

    def _progress_of(self, task_id: int) -> Progress:
        def progress(done: int, total: int | None, message: str = "") -> None:
            self._set(task_id, done=done, total=total, message=message[:1000],
                      heartbeat_at=self.clock())
        return progress

    def _run(self, work: TaskWork, context: TaskContext) -> None:
        try:
            result = work(context)
        except Exception as exc:  # recorded as the task's error; the thread must go on
            log.exception("background task %d (%s) failed", context.task_id, context.kind)
            self._finish(context.task_id, TaskState.FAILED,
                         error=str(exc) or type(exc).__name__)
        else:
            self._finish(context.task_id, TaskState.DONE, result=to_json(result))
        finally:
            with self._lock:
                self._futures.pop(context.task_id, None)

    def _finish(self, task_id: int, state: TaskState, *, result: str | None = None,
                error: str | None = None) -> None:
        now = self.clock()
        self._set(task_id, state=state, result=result, error=error, finished_at=now,
                  heartbeat_at=now)

    def _set(self, task_id: int, **values: Any) -> None:
        with session_scope(self.sessions) as session:
            session.execute(update(BackgroundTask).where(BackgroundTask.id == task_id)
                            .values(**values))

    def _beat_loop(self) -> None:
        interval = max(self.stale_after.total_seconds() / 4, 0.05)
        while not self._stopping.wait(interval):
            with self._lock:
                running = list(self._futures)
            if not running:
                continue
            try:
                with session_scope(self.sessions) as session:
                    session.execute(update(BackgroundTask)
                                    .where(BackgroundTask.id.in_(running),
                                           BackgroundTask.state == TaskState.RUNNING)
                                    .values(heartbeat_at=self.clock()))
            except Exception:  # a missed beat is retried next interval; logged, not hidden
                log.exception("background task heartbeat failed")
