"""Reading background tasks for their page: the state as people should see it (a running task
whose runner fell silent is interrupted), progress, result and error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from gateway.tasks.models import BackgroundTask, TaskState
from gateway.tasks.runner import STALE_AFTER


@dataclass(frozen=True)
class TaskView:
    id: int
    kind: str
    started_by: str
    params: dict[str, Any]
    state: TaskState
    done: int
    total: int | None
    message: str
    result: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def running(self) -> bool:
        return self.state is TaskState.RUNNING

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, self.done * 100 // self.total)


def shown_state(task: BackgroundTask, now: datetime,
                stale_after: timedelta = STALE_AFTER) -> TaskState:
    if task.state is TaskState.RUNNING and task.heartbeat_at < now - stale_after:
        return TaskState.INTERRUPTED
    return task.state


def task_view(session: Session, task_id: int, now: datetime,
              stale_after: timedelta = STALE_AFTER) -> TaskView | None:
    task = session.get(BackgroundTask, task_id)
    if task is None:
        return None
    return TaskView(task.id, task.kind, task.started_by, json.loads(task.params),
                    shown_state(task, now, stale_after), task.done, task.total, task.message,
                    json.loads(task.result) if task.result is not None else None, task.error,
                    task.started_at, task.finished_at)
