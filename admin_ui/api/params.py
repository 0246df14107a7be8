"""Request parts shared by the API routers: row ids in paths, and the base of every body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict

# Row ids are 32-bit integers on PostgreSQL; a larger number is a 422, not an overflow deep
# in the database driver (a 500).
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]


class StrictBody(BaseModel):
    """A request body that refuses fields it does not know (a typing error, not ignored)."""

    model_config = ConfigDict(extra="forbid")
