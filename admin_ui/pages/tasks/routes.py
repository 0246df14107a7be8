"""The page of one background task (gateway.tasks): its progress while it runs (the page
reloads itself with ``<meta http-equiv="refresh">``, no script), then its result or error.

Whoever started the task and admins may see it; for anyone else the id answers like one that
does not exist (admin_ui.security.rights.check_task). How a page starts a task:
gateway.tasks.runner.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import check_task, staff_user
from gateway.clock import Clock
from gateway.db import read_scope
from gateway.tasks.views import task_view

MAX_FORM = 4 * 1024
# Seconds between the reloads of a running task's page.
REFRESH_SECONDS = 2


def task_path(task_id: int) -> str:
    return f"/console/tasks/{task_id}"


def tasks_router(auth: Authenticator, sessions: sessionmaker[Session], clock: Clock,
                 renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    @router.get("/console/tasks/{task_id}")
    async def show(request: Request, staff: StaffUser, task_id: str) -> Response:
        wanted = parse_id(task_id)

        def work() -> Response:
            with read_scope(sessions) as session:
                task = check_task(staff, task_view(session, wanted, clock()))
            return renderer.page(request, "tasks/task.html",
                                 {"task": task,
                                  "refresh": REFRESH_SECONDS if task.running else None},
                                 staff=staff)

        return await run_in_threadpool(work)

    return router
