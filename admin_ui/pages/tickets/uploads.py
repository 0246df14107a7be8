"""Uploads kept in memory: plaintext attachments must never touch the disk.

Starlette's multipart parser puts each uploaded file into a ``SpooledTemporaryFile`` that
rolls over to a real temporary file above ``spool_max_size`` (1 MB). Behind the login guard
the whole body is already in memory and bounded by the route's limit
(admin_ui.api.body_limit.BoundedRequest), so the spool is given that limit as its size: no
part can exceed it, and nothing rolls over to disk. Anything larger was refused (413) before
parsing began.
"""

from __future__ import annotations

from contextlib import aclosing

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from admin_ui.api.body_limit import BoundedRequest


class InMemoryFormRequest(BoundedRequest):
    """A bounded request whose multipart form keeps every file in memory."""

    async def _get_form(self, *, max_files: int | float = 1000,
                        max_fields: int | float = 1000,
                        max_part_size: int = 1024 * 1024) -> FormData:
        if self._form is None and self.headers.get("content-type", "").lower().startswith(
                "multipart/form-data"):
            await self.body()  # refuses an oversize body before anything is parsed
            try:
                async with aclosing(self.stream()) as stream:
                    parser = MultiPartParser(self.headers, stream, max_files=max_files,
                                             max_fields=max_fields,
                                             max_part_size=max_part_size)
                    # An instance attribute: the class's 1 MB stays for everyone else.
                    parser.spool_max_size = self.limit + 1
                    self._form = await parser.parse()
            except MultiPartException as exc:
                raise HTTPException(400, exc.message) from None
            return self._form
        return await super()._get_form(max_files=max_files, max_fields=max_fields,
                                       max_part_size=max_part_size)
