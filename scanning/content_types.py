"""Attachment type policy: executables, scripts and macro-enabled Office documents, by content.

A file name is whatever the sender typed, so types are recognised by what the bytes are:

- ``executable``: clear magic numbers only. PE and DOS (MZ) programs, ELF, Mach-O (thin and
  universal), Java classes and archives (a zip with ``.class`` members), Android packages
  (``classes.dex``), Windows shortcuts (LNK, which run commands), and Windows Installer
  packages (an OLE2 file whose root storage has the MSI class id).
- ``script``: a shebang (``#!/...``) whatever the name; or a name with a script extension that
  Windows or a Unix desktop runs on a double click (``.js``, ``.vbs``, ``.ps1``, ``.bat``,
  ``.cmd``, ``.hta``, ``.wsf``, ...) *and* content that is text. Scripts have no magic number,
  so content alone would catch every text file and the name alone would catch a PDF called
  "x.js"; the name decides which interpreter would run the file, the content whether it is a
  script at all. Binary content behind a script name falls to the other rules.
- ``office-macro``: an OOXML or OpenDocument zip that carries macros (``vbaProject.bin``
  anywhere, Excel 4.0 ``xl/macrosheets/``, OpenDocument ``Basic/`` modules or ``Scripts/``),
  whatever the extension (a ``.docm`` renamed ``.docx`` is caught); and an OLE2 document
  (Word/Excel 97-2003) with a ``Macros``, ``VBA``, ``_VBA_PROJECT`` or ``_VBA_PROJECT_CUR``
  storage or stream. OLE2 directory entries are found by their structure (a UTF-16LE name at a
  128-byte boundary, followed by its length and an entry type), not by walking the sector
  chains: cheap, and blind to a name written in the file's text by chance. PowerPoint 97-2003
  keeps its VBA inside a compressed record of its main stream and Excel 4.0 macro sheets in
  a .xls are records of the workbook stream: neither is recognised here.

``blocked_type`` looks at one object. Archives are not opened by it; ``blocked_in_archive``
applies it to every member of an archive (a zip holding ``rechnung.exe`` or ``.js`` is the most
common way malware arrives), at the cost of one more bounded walk.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Collection

from scanning.archives import ArchiveLimits, ArchiveRejected, iter_members
from scanning.archives.zip import read_zip_directory

_SAMPLE = 8192  # bytes of content looked at to decide "text"
_ZIP_NAMES_CAP = 0xFFFF  # more entries than a zip without zip64 records can hold

SCRIPT_EXTENSIONS = frozenset({
    # Windows Script Host, PowerShell, cmd.exe, HTML applications, registry imports
    "js", "jse", "vbs", "vbe", "wsf", "wsh", "wsc", "sct", "hta", "ps1", "psm1", "psd1",
    "bat", "cmd", "reg", "scf", "vb",
    # Unix shells and interpreters a desktop may run
    "sh", "bash", "zsh", "csh", "ksh", "command", "py", "pyw", "pl", "rb", "php",
    "applescript",
})


def blocked_type(data: bytes, filename: str | None, blocked: Collection[str]) -> str | None:
    """"blocked type: <kind> (<what>)" if ``data`` is of a type in ``blocked``, else None."""
    # A zip's names serve both checks: its directory is read once (a 20,000-member zip cost
    # about 0.35 s of CPU a reading).
    names = _zip_names(data) if "executable" in blocked or "office-macro" in blocked else []
    if "executable" in blocked:
        what = executable_kind(data, zip_names=names)
        if what is not None:
            return f"blocked type: executable ({what})"
    if "office-macro" in blocked:
        what = office_macro_kind(data, zip_names=names)
        if what is not None:
            return f"blocked type: office-macro ({what})"
    if "script" in blocked:
        what = script_kind(data, filename)
        if what is not None:
            return f"blocked type: script ({what})"
    return None


def blocked_in_archive(data: bytes, name: str, blocked: Collection[str],
                       limits: ArchiveLimits) -> str | None:
    """The first member of the archive ``data`` whose type is blocked, as a reason.

    Raises ``ArchiveRejected`` where ``check_archive`` would give a reason.
    """
    for path, content in iter_members(data, name, limits):
        reason = blocked_type(content, path.rsplit("/", 1)[-1], blocked)
        if reason is not None:
            return f"{reason} in {path}"
    return None


# --- executables ------------------------------------------------------------------------------

_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
_LNK = bytes.fromhex("4c0000000114020000000000c000000000000046")
_OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")
# Root storage class ids of Windows Installer packages (.msi) and patches (.msp).
_MSI_CLASSES = (bytes.fromhex("84100c0000000000c000000000000046"),
                bytes.fromhex("86100c0000000000c000000000000046"))


def executable_kind(data: bytes, *, zip_names: list[str] | None = None) -> str | None:
    """The kind of executable ``data`` is, if any; ``zip_names``: its zip directory's names,
    if the caller read them already."""
    if data[:2] in (b"MZ", b"ZM") and len(data) >= 64:
        (pe_offset,) = struct.unpack_from("<L", data, 0x3C)
        if data[pe_offset:pe_offset + 4] == b"PE\x00\x00":
            return "PE"
        if b"\x00" in data[2:64]:  # a DOS header, not a text that starts with "MZ"
            return "MZ"
    if data.startswith(b"\x7fELF"):
        return "ELF"
    if data.startswith(_MACHO):
        return "Mach-O"
    if data[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf") and len(data) >= 8:
        # Shared by Mach-O universal binaries (a small architecture count follows) and Java
        # classes (a class-file version of at least 45 follows).
        (count,) = struct.unpack_from(">L", data, 4)
        return "Mach-O universal" if 0 < count < 45 else "Java class"
    if data.startswith(_LNK):
        return "Windows shortcut"
    if data.startswith(_OLE2) and _ole_root_class(data) in _MSI_CLASSES:
        return "Windows Installer"
    names = _zip_names(data) if zip_names is None else zip_names
    if any(name.endswith(".class") for name in names):
        return "Java archive"
    if "classes.dex" in names:
        return "Android package"
    return None


# --- scripts ----------------------------------------------------------------------------------

_SHEBANG = re.compile(rb"#![ \t]*/")


def script_kind(data: bytes, filename: str | None) -> str | None:
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if _SHEBANG.match(body):
        return "shebang"
    extension = _extension(filename)
    if extension in SCRIPT_EXTENSIONS and looks_like_text(data):
        return f".{extension}"
    return None


def _extension(filename: str | None) -> str | None:
    if not filename:
        return None
    # Windows drops trailing dots and spaces: "rechnung.js. " runs as "rechnung.js".
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].rstrip(". ")
    if "." not in name:
        return None
    return name.rsplit(".", 1)[-1].lower()


_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def looks_like_text(data: bytes) -> bool:
    """Whether the first bytes of ``data`` are text (UTF-8, a single-byte code or UTF-16)."""
    sample = data[:_SAMPLE]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(sample):
        big = sample.startswith(b"\xfe\xff")
        sample = sample.decode("utf-16-be" if big else "utf-16-le", "replace").encode(
            "utf-8", "replace")
    if not sample.strip():
        return False
    controls = len(_CONTROL.findall(sample))
    return b"\x00" not in sample and controls * 100 <= len(sample)


def _utf16_without_bom(sample: bytes) -> bool:
    # PowerShell reads UTF-16LE scripts without a BOM too: ASCII text then has a NUL in
    # every second byte.
    head = sample[:512]
    return len(head) >= 16 and head[1::2].count(0) >= len(head) // 2 * 0.9 \
        and head[0::2].count(0) == 0


# --- Office macros ----------------------------------------------------------------------------

_ODF_LIBRARY_FILES = frozenset({"script-lc.xml", "script-lb.xml", "dialog-lc.xml",
                                "dialog-lb.xml", "manifest.xml"})
_OLE_MACRO_NAMES = ("_VBA_PROJECT_CUR", "_VBA_PROJECT", "Macros", "VBA")
_OLE_ENTRY = 128


def _ole_name_pattern(name: str) -> re.Pattern[bytes]:
    # The name field: UTF-16LE, NUL-terminated, any letter case (OLE compares names without
    # case); the entry must start at a 128-byte boundary, checked on each hit.
    encoded = (name + "\x00").encode("utf-16-le")
    return re.compile(re.escape(encoded), re.IGNORECASE)


_OLE_PATTERNS = tuple((name, _ole_name_pattern(name)) for name in _OLE_MACRO_NAMES)


def office_macro_kind(data: bytes, *, zip_names: list[str] | None = None) -> str | None:
    """The kind of macro ``data`` carries, if any; ``zip_names`` as for executable_kind."""
    if data.startswith(_OLE2):
        name = _ole_macro_entry(data)
        return f"OLE2 {name} storage" if name is not None else None
    for member in _zip_names(data) if zip_names is None else zip_names:
        lower = member.lower()
        if lower.rsplit("/", 1)[-1] == "vbaproject.bin":
            return "VBA project"
        if lower.startswith("xl/macrosheets/"):
            return "Excel 4.0 macro sheet"
        if member.startswith("Basic/") and member.endswith(".xml") \
                and member.rsplit("/", 1)[-1] not in _ODF_LIBRARY_FILES:
            return "OpenDocument Basic macros"
        if member.startswith("Scripts/") and not member.endswith("/"):
            return "OpenDocument scripts"
    return None


def _ole_macro_entry(data: bytes) -> str | None:
    return _ole_entry_of(data, _OLE_PATTERNS)


def ole_entry(data: bytes, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that is a storage or stream in the OLE2 file ``data``, if any."""
    if not data.startswith(_OLE2):
        return None
    return _ole_entry_of(data, tuple((name, _ole_name_pattern(name)) for name in names))


def _ole_entry_of(data: bytes,
                  patterns: tuple[tuple[str, re.Pattern[bytes]], ...]) -> str | None:
    for name, pattern in patterns:
        length = (len(name) + 1) * 2
        for hit in pattern.finditer(data, 512):
            at = hit.start()
            if at % _OLE_ENTRY or at + 0x43 > len(data):
                continue
            (declared,) = struct.unpack_from("<H", data, at + 0x40)
            if declared == length and data[at + 0x42] in (1, 2):  # storage or stream
                return name
    return None


def _ole_root_class(data: bytes) -> bytes | None:
    """The class id of an OLE2 file's root storage (the first directory entry)."""
    if len(data) < 512:
        return None
    (shift,) = struct.unpack_from("<H", data, 0x1E)
    (first,) = struct.unpack_from("<L", data, 0x30)
    if shift not in (9, 12) or first >= 0xFFFFFFFA:
        return None
    at = (first + 1) << shift
    if at + _OLE_ENTRY > len(data) or data[at + 0x42] != 5:  # 5 = root storage
        return None
    return data[at + 0x50:at + 0x60]


def _zip_names(data: bytes) -> list[str]:
    if not data.startswith(b"PK"):
        return []
    try:
        return [entry.name for entry in read_zip_directory(data, _ZIP_NAMES_CAP)]
    except ArchiveRejected:
        return []  # a broken zip is no Office document; check_archive refuses it anyway
