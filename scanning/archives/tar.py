"""Tar: members read with tarfile, names and link targets checked, nothing hidden after the end."""

from __future__ import annotations

import functools
import io
import re
import tarfile
from collections.abc import Iterator
from typing import IO

from scanning.archives.decompress import OUT_STEP
from scanning.archives.limits import ArchiveRejected, Budget, MemberSource
from scanning.archives.names import unsafe_name

_NONZERO = re.compile(rb"[^\x00]")


def tar_members(data: bytes, where: str, max_members: int,
                budget: Budget) -> Iterator[tuple[str, MemberSource]]:
    """Every regular file of the tar ``data``: its path and its content in chunks.

    Other members (directories, links) are counted, not yielded.
    """
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except (tarfile.TarError, ValueError):
        raise ArchiveRejected(f"{where}: unreadable tar archive") from None
    count = 0
    while True:
        try:
            member = archive.next()
        except (tarfile.TarError, ValueError):
            raise ArchiveRejected(f"{where}: unreadable tar archive") from None
        if member is None:
            break
        count += 1
        if count > max_members:
            raise ArchiveRejected(f"{where}: more than {max_members} archive members")
        problem = unsafe_name(member.name)
        if problem is None and (member.issym() or member.islnk()):
            problem = unsafe_name(member.linkname)
            if problem is not None:
                problem = f"a link target with {problem}"
        if problem is not None:
            raise ArchiveRejected(f"{where}: member name {member.name!r} has {problem}")
        if member.issparse():
            raise ArchiveRejected(f"{where}: sparse tar member {member.name!r}")
        if not member.isreg():
            budget.count(f"{where}/{member.name}")
            continue
        if archive.extractfile(member) is None:
            continue
        path = f"{where}/{member.name}"
        yield path, functools.partial(_read_member, archive, member, path)
    # tarfile stops at the first bad block; GNU tar skips it and reads on.
    if _NONZERO.search(data, archive.offset) is not None:
        raise ArchiveRejected(f"{where}: data after the end of the tar archive")


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo,
                 where: str) -> Iterator[bytes]:
    reader = archive.extractfile(member)
    if reader is not None:
        yield from _read_chunks(reader, where)


def _read_chunks(reader: IO[bytes], where: str) -> Iterator[bytes]:
    try:
        while chunk := reader.read(OUT_STEP):
            yield chunk
    except tarfile.TarError:
        raise ArchiveRejected(f"{where}: truncated tar member") from None
