"""Background tasks (gateway.tasks) and their page /console/tasks/{id}, on SQLite and
PostgreSQL: progress, result and error recorded by the runner's threads; a task left running
by an ended process shown interrupted after a restart (while a live one of another process is
not); only the starter and admins see a task, any other id answers 404."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.services import Services
from gateway.tasks.models import BackgroundTask, TaskState
from gateway.tasks.runner import STALE_AFTER, TaskContext, TaskRunner, UnknownTaskKind
from gateway.tasks.views import task_view
from tests.support.console_web import add_console_staff, console_login
from tests.support.staff_web import BASE_URL

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def counting(ctx: TaskContext) -> Mapping[str, Any]:
    total = int(ctx.params["n"])
    for done in range(1, total + 1):
        ctx.progress(done, total, f"step {done}")
    return {"counted": total}


def failing(ctx: TaskContext) -> Mapping[str, Any]:
    ctx.progress(1, 3, "first step")
    raise ValueError("the second step found nothing to do")


@pytest.fixture
def runner(services: Services, clock: FakeClock) -> Iterator[TaskRunner]:
    tasks = TaskRunner(services.sessions, clock)
    tasks.register("count", counting)
    tasks.register("fail", failing)
    tasks.begin()
    yield tasks
    tasks.stop()


def stored(services: Services, task_id: int) -> BackgroundTask:
    with read_scope(services.sessions) as s:
        task = s.get(BackgroundTask, task_id)
        assert task is not None
        s.expunge(task)  # kept as read, past the read scope's rollback
        return task


def test_a_task_records_its_progress_and_result(services: Services,
                                                runner: TaskRunner) -> None:
    task_id = runner.start("count", "dora", {"n": 3})
    runner.wait(task_id)
    task = stored(services, task_id)
    assert (task.state, task.done, task.total, task.message) == (TaskState.DONE, 3, 3, "step 3")
    assert task.result == '{"counted": 3}' and task.error is None
    assert task.started_by == "dora" and task.finished_at is not None


def test_a_failing_task_records_its_error(services: Services, runner: TaskRunner) -> None:
    task_id = runner.start("fail", "dora", {})
    runner.wait(task_id)
    task = stored(services, task_id)
    assert task.state is TaskState.FAILED and task.result is None
    assert task.error == "the second step found nothing to do"
    assert (task.done, task.total) == (1, 3)


def test_an_unknown_kind_is_refused_and_nothing_stored(services: Services,
                                                       runner: TaskRunner) -> None:
    with pytest.raises(UnknownTaskKind):
        runner.start("rescan-everything", "dora", {})
    with read_scope(services.sessions) as s:
        assert s.query(BackgroundTask).count() == 0


def left_running(services: Services, clock: FakeClock, *, silent_for: timedelta,
                 started_by: str = "dora") -> int:
    """A task row as a process leaves it that is working on it (or that ended)."""
    with session_scope(services.sessions) as s:
        task = BackgroundTask(kind="count", started_by=started_by, params="{}",
                              state=TaskState.RUNNING, done=5, total=10, message="",
                              owner="other-host:1:abc", started_at=clock() - silent_for,
                              heartbeat_at=clock() - silent_for)
        s.add(task)
        s.flush()
        return task.id


def test_recover_marks_only_silent_tasks_interrupted(services: Services,
                                                     clock: FakeClock) -> None:
    dead = left_running(services, clock, silent_for=STALE_AFTER + timedelta(seconds=1))
    alive = left_running(services, clock, silent_for=timedelta(seconds=5))
    assert TaskRunner(services.sessions, clock).recover() == 1
    assert stored(services, dead).state is TaskState.INTERRUPTED
    assert stored(services, alive).state is TaskState.RUNNING
    # A reader shows a task interrupted as soon as it falls silent, before any recover().
    clock.advance(STALE_AFTER.total_seconds())
    with read_scope(services.sessions) as s:
        view = task_view(s, alive, clock())
    assert view is not None and view.state is TaskState.INTERRUPTED


# --- the page ---------------------------------------------------------------------------------


@pytest.fixture
def secrets(services: Services) -> dict[str, str]:
    return add_console_staff(services)


@pytest.fixture
def client(services: Services, clock: FakeClock, secrets: dict[str, str]
           ) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def app_runner(client: TestClient) -> TaskRunner:
    tasks = client.app.state.tasks  # type: ignore[attr-defined]
    assert isinstance(tasks, TaskRunner)
    return tasks


def test_the_page_shows_progress_while_running_then_the_result(
        client: TestClient, secrets: dict[str, str], clock: FakeClock) -> None:
    tasks = app_runner(client)
    go_on = threading.Event()
    halfway = threading.Event()

    def slow(ctx: TaskContext) -> Mapping[str, Any]:
        ctx.progress(1, 4, "erster Schritt")
        halfway.set()
        assert go_on.wait(10)
        ctx.progress(4, 4, "")
        return {"geprüft": 4}

    tasks.register("slow", slow)
    console_login(client, secrets, clock, "dora")
    task_id = tasks.start("slow", "dora", {})
    assert halfway.wait(10)
    page = client.get(f"/console/tasks/{task_id}")
    assert page.status_code == 200
    assert '<meta http-equiv="refresh" content="2">' in page.text
    assert 'data-state="running"' in page.text and "erster Schritt" in page.text
    assert '<progress id="task-progress" max="4" value="1">' in page.text
    go_on.set()
    tasks.wait(task_id)
    page = client.get(f"/console/tasks/{task_id}")
    assert 'data-state="done"' in page.text and "http-equiv" not in page.text
    assert "geprüft" in page.text and 'id="task-result"' in page.text


def test_a_failed_task_shows_its_error(client: TestClient, secrets: dict[str, str],
                                       clock: FakeClock) -> None:
    tasks = app_runner(client)
    tasks.register("fail", failing)
    task_id = tasks.start("fail", "dora", {})
    tasks.wait(task_id)
    console_login(client, secrets, clock, "dora")
    page = client.get(f"/console/tasks/{task_id}")
    assert 'data-state="failed"' in page.text
    assert "the second step found nothing to do" in page.text


def test_only_the_starter_and_admins_see_a_task(client: TestClient, secrets: dict[str, str],
                                                clock: FakeClock) -> None:
    tasks = app_runner(client)
    tasks.register("count", counting)
    task_id = tasks.start("count", "dora", {"n": 1})
    tasks.wait(task_id)
    for user, status in (("dora", 200), ("root", 200), ("dpo", 404), ("anna", 404)):
        console_login(client, secrets, clock, user)
        assert client.get(f"/console/tasks/{task_id}").status_code == status, user
    # Unknown ids and ids that are no number answer as a task of someone else does.
    for other in (str(task_id + 1), "abc", "1" * 20, "-1"):
        assert client.get(f"/console/tasks/{other}").status_code == 404, other
    client.cookies.clear()
    answer = client.get(f"/console/tasks/{task_id}", follow_redirects=False)
    assert answer.status_code in (303, 401)


def test_a_task_left_by_a_crash_is_interrupted_after_a_restart(
        services: Services, clock: FakeClock, secrets: dict[str, str]) -> None:
    task_id = left_running(services, clock, silent_for=timedelta(minutes=5))
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as client:
        console_login(client, secrets, clock, "dora")
        page = client.get(f"/console/tasks/{task_id}")
    assert 'data-state="interrupted"' in page.text and 'id="task-interrupted"' in page.text
    assert "http-equiv" not in page.text
    assert stored(services, task_id).state is TaskState.INTERRUPTED
