"""Path parameters shared by the API routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

# Row ids are 32-bit integers on PostgreSQL; a larger number is a 422, not an overflow deep
# in the database driver (a 500).
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
