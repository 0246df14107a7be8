"""A cap on a request's body, counted as it arrives, for routers that take large uploads.

Starlette's own limit would answer in plain text, not JSON; this one raises ApiError (413).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope

from admin_ui.api.errors import ApiError


class BoundedRequest(Request):
    """A request whose body may not exceed ``limit`` bytes, counted as it arrives, so an
    oversize upload is refused before it is held in memory (FastAPI's custom Request
    pattern)."""

    def __init__(self, scope: Scope, receive: Receive, limit: int) -> None:
        super().__init__(scope, receive)
        self.limit = limit

    def _too_large(self) -> ApiError:
        return ApiError(413, "too_large", f"the request is larger than {self.limit} bytes")

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                raise self._too_large()
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self.limit:
                    raise self._too_large()
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body


def bounded_route(max_body: int) -> type[APIRoute]:
    """A route class for ``APIRouter(route_class=...)`` that refuses bodies over
    ``max_body`` bytes."""

    class BoundedRoute(APIRoute):
        """Bounds the body. Validation errors name the field in the app-wide handler
        (admin_ui.api.errors)."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                bounded = BoundedRequest(request.scope, request.receive, max_body)
                # Read here, not first in the handler: FastAPI turns any error while it
                # reads the body into a bare 400.
                await bounded.body()
                return await handler(bounded)

            return handle

    return BoundedRoute
