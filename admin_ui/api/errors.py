"""Every error answer is JSON with a message, never an HTML page or a stack trace::

    {"error": "not_found", "message": "no partner named ..."}

A route refuses with ``ApiError``; a refused login or right (admin_ui.security.errors) is a
401 with its WWW-Authenticate challenge, a 403, or a 429 after too many failed attempts. The
handlers are installed by admin_ui.errors, which answers pages with HTML instead.

A request the schema refuses is one shape for every API (422)::

    {"error": "invalid_request",
     "message": "outbound_policy: Input should be 'require-smime', ...; colour: Extra ...",
     "fields": {"outbound_policy": "Input should be 'require-smime', ...",
                "colour": "Extra inputs are not permitted"}}

``fields`` maps where the problem is to what it is, so a form can mark the field: a body
field by its path (``granted_by.role``, ``recipients[0].kind``, ``body`` for the body as a
whole), a parameter as ``query parameter NAME`` or ``path parameter NAME``. Two problems with
one field are joined with "; ".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class ApiError(Exception):
    """An answer other than success, as JSON ``{"error": ..., "message": ...}``."""

    def __init__(self, status: int, error: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})


def json_error(status: int, error: str, message: str,
               headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status,
                        headers=dict(headers or {}))


def invalid_request_response(errors: Sequence[Any]) -> JSONResponse:
    """The 422 answer for pydantic's (or FastAPI's) list of validation errors."""
    fields: dict[str, str] = {}
    lines: list[str] = []
    for error in errors:
        if error.get("type") == "json_invalid":
            where, problem = "body", "not valid JSON"
            lines.append("the body is not valid JSON")
        else:
            where, problem = field_name(error.get("loc", ())), str(error.get("msg"))
            lines.append(f"{where}: {problem}")
        fields[where] = f"{fields[where]}; {problem}" if where in fields else problem
    message = "; ".join(lines)
    return JSONResponse({"error": "invalid_request", "message": message, "fields": fields},
                        status_code=422)


def invalid_field(where: str, problem: str) -> RequestValidationError:
    """A check in a route function that the schema cannot express, answered like the
    schema's own refusals; ``where`` is a body field's path, e.g. ``document.data_base64``."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", *where.split(".")),
                                    "msg": problem}])


def field_name(loc: Sequence[int | str]) -> str:
    """``("body", "recipients", 0, "kind")`` -> ``recipients[0].kind``; parameters say which
    kind they are (``query parameter version``)."""
    parts = list(loc)
    where = parts.pop(0) if parts and parts[0] in _LOCATIONS else None
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    if where is not None and where != "body":
        return f"{where} parameter {name}"
    return name or "body"


_LOCATIONS = ("body", "query", "path", "header", "cookie")
