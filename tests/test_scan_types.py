"""Attachment type policy (scanning.content_types): recognised by content, not by name."""

from __future__ import annotations

import importlib.util
import io
import struct
import sys
import zipfile
from pathlib import Path

import pytest

from scanning.archives import ArchiveLimits, ArchiveRejected
from scanning.archives.zip import ZipEntry
from scanning.content_types import (
    blocked_in_archive,
    blocked_type,
    executable_kind,
    looks_like_text,
    office_macro_kind,
    script_kind,
)

ALL = ("executable", "script", "office-macro")
OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")
MSI_CLASS = bytes.fromhex("84100c0000000000c000000000000046")


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def pe() -> bytes:
    dos = bytearray(0x80)
    dos[:2] = b"MZ"
    struct.pack_into("<L", dos, 0x3C, 0x80)
    return bytes(dos) + b"PE\x00\x00" + bytes(200)


def ole2(entries: list[tuple[str, int]], root_class: bytes = bytes(16),
         stream: bytes = b"") -> bytes:
    """A minimal OLE2 file: header, one directory sector (sector 0), then ``stream``."""
    header = bytearray(512)
    header[:8] = OLE2
    struct.pack_into("<H", header, 0x1E, 9)  # 512-byte sectors
    struct.pack_into("<L", header, 0x30, 0)  # the directory starts at sector 0
    directory = bytearray()
    for name, kind in [("Root Entry", 5), *entries]:
        entry = bytearray(128)
        encoded = (name + "\x00").encode("utf-16-le")
        entry[:len(encoded)] = encoded
        struct.pack_into("<H", entry, 0x40, len(encoded))
        entry[0x42] = kind
        if kind == 5:
            entry[0x50:0x60] = root_class
        directory += entry
    directory += bytes(-len(directory) % 512)
    return bytes(header + directory) + stream


# --- executables ----------------------------------------------------------------------------


def test_a_pe_is_blocked_whatever_its_name() -> None:
    assert blocked_type(pe(), "bericht.pdf", ALL) == "blocked type: executable (PE)"
    assert blocked_type(pe(), None, ALL) == "blocked type: executable (PE)"


def test_real_windows_executables_are_recognised() -> None:
    spec = importlib.util.find_spec("setuptools")
    if spec is None or spec.origin is None:
        pytest.skip("setuptools is not installed")
    launchers = sorted(Path(spec.origin).parent.glob("*.exe"))
    if not launchers:
        pytest.skip("setuptools ships no Windows launchers here")
    assert executable_kind(launchers[0].read_bytes()) == "PE"


def test_the_running_interpreter_is_an_elf_or_mach_o_executable() -> None:
    head = Path(sys.executable).resolve().read_bytes()[:4096]
    assert executable_kind(head) in ("ELF", "Mach-O", "Mach-O universal")


@pytest.mark.parametrize(("data", "kind"), [
    (b"\x7fELF\x02\x01\x01" + bytes(60), "ELF"),
    (b"\xcf\xfa\xed\xfe" + bytes(60), "Mach-O"),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(60), "Mach-O universal"),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(60), "Java class"),
    (bytes.fromhex("4c0000000114020000000000c000000000000046") + bytes(60),
     "Windows shortcut"),
    (b"MZ\x90\x00" + bytes(60) + b"This program must be run under DOS", "MZ"),
])
def test_clear_magic_numbers(data: bytes, kind: str) -> None:
    assert executable_kind(data) == kind
    assert blocked_type(data, "x.txt", ALL) == f"blocked type: executable ({kind})"


def test_java_and_android_archives_are_executables() -> None:
    jar = make_zip({"META-INF/MANIFEST.MF": b"Main-Class: A\n", "A.class": b"\xca\xfe\xba\xbe"})
    assert executable_kind(jar) == "Java archive"
    apk = make_zip({"AndroidManifest.xml": b"x", "classes.dex": b"dex\n035\x00"})
    assert executable_kind(apk) == "Android package"


def test_windows_installer_packages_are_executables() -> None:
    assert executable_kind(ole2([], MSI_CLASS)) == "Windows Installer"
    assert executable_kind(ole2([])) is None


def test_text_that_starts_with_mz_is_not_an_executable() -> None:
    text = b"MZ-Bericht: Mutter und Kind wurden am Montag besucht. " * 4
    assert executable_kind(text) is None
    assert blocked_type(text, "notiz.txt", ALL) is None


def test_only_the_configured_types_are_blocked() -> None:
    assert blocked_type(pe(), "a.exe", ["script", "office-macro"]) is None
    assert blocked_type(b"#!/bin/sh\nrm -rf /\n", "a", ["executable"]) is None


# --- scripts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"#!/bin/sh\necho hi\n", b"#! /usr/bin/env python3\n",
                                  b"\xef\xbb\xbf#!/usr/bin/perl\n"])
def test_a_shebang_is_a_script_whatever_the_name(data: bytes) -> None:
    assert blocked_type(data, "lebenslauf.txt", ALL) == "blocked type: script (shebang)"


@pytest.mark.parametrize(("name", "extension"), [
    ("rechnung.js", ".js"), ("RECHNUNG.JS", ".js"), ("rechnung.pdf.vbs", ".vbs"),
    ("start.bat", ".bat"), ("run.cmd", ".cmd"), ("app.hta", ".hta"), ("job.wsf", ".wsf"),
    ("rechnung.js. ", ".js"), ("install.ps1", ".ps1"), ("C:\\temp\\x.sh", ".sh"),
])
def test_a_script_extension_with_text_content_is_a_script(name: str, extension: str) -> None:
    content = b'var s = new ActiveXObject("WScript.Shell");\r\ns.Run("calc");\r\n'
    assert blocked_type(content, name, ALL) == f"blocked type: script ({extension})"


def test_a_powershell_script_in_utf16_is_text() -> None:
    script = "Invoke-WebRequest http://example.org/x -OutFile x.exe\r\n"
    for encoded in (b"\xff\xfe" + script.encode("utf-16-le"), script.encode("utf-16-le")):
        assert looks_like_text(encoded)
        assert script_kind(encoded, "update.ps1") == ".ps1"


def test_binary_content_behind_a_script_name_is_no_script() -> None:
    binary = bytes(range(256)) * 4
    assert script_kind(binary, "daten.js") is None
    assert blocked_type(binary, "daten.js", ALL) is None


def test_script_text_under_a_harmless_name_is_not_blocked() -> None:
    content = b'var s = new ActiveXObject("WScript.Shell");\n'
    assert blocked_type(content, "notiz.txt", ALL) is None
    assert blocked_type(content, None, ALL) is None
    assert blocked_type(content, "js", ALL) is None


def test_empty_content_is_not_text() -> None:
    assert not looks_like_text(b"")
    assert blocked_type(b"", "leer.js", ALL) is None


# --- Office macros ----------------------------------------------------------------------------


def ooxml(*extra: str) -> bytes:
    members = {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"}
    members.update({name: b"\xd0\xcf\x11\xe0 vba" for name in extra})
    return make_zip(members)


def test_a_plain_docx_is_not_blocked() -> None:
    assert blocked_type(ooxml(), "bericht.docx", ALL) is None


@pytest.mark.parametrize("name", ["bericht.docm", "bericht.docx", "bericht.zip", None])
def test_a_vba_project_is_found_whatever_the_document_is_called(name: str | None) -> None:
    assert blocked_type(ooxml("word/vbaProject.bin"), name, ALL) == \
        "blocked type: office-macro (VBA project)"


def test_excel_4_macro_sheets_are_macros() -> None:
    data = make_zip({"xl/workbook.xml": b"<w/>", "xl/macrosheets/sheet1.xml": b"<m/>"})
    assert office_macro_kind(data) == "Excel 4.0 macro sheet"


def test_opendocument_basic_modules_are_macros_but_empty_libraries_are_not() -> None:
    base = {"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<c/>",
            "Basic/script-lc.xml": b"<l/>", "Basic/Standard/script-lb.xml": b"<l/>"}
    assert office_macro_kind(make_zip(base)) is None
    with_module = {**base, "Basic/Standard/Module1.xml": b"<module/>"}
    assert office_macro_kind(make_zip(with_module)) == "OpenDocument Basic macros"
    assert office_macro_kind(make_zip({**base, "Scripts/python/x.py": b"import os"})) == \
        "OpenDocument scripts"


@pytest.mark.parametrize(("entry", "found"), [
    ("Macros", "Macros"), ("_VBA_PROJECT_CUR", "_VBA_PROJECT_CUR"), ("vba", "VBA")])
def test_ole2_documents_with_a_vba_storage_are_blocked(entry: str, found: str) -> None:
    data = ole2([("WordDocument", 2), (entry, 1)])
    assert blocked_type(data, "alt.doc", ALL) == \
        f"blocked type: office-macro (OLE2 {found} storage)"


def test_ole2_documents_without_macros_pass() -> None:
    # The word "Macros" in the document's own text is no directory entry.
    text = ("Bitte keine Macros aktivieren." + "\x00").encode("utf-16-le")
    data = ole2([("WordDocument", 2), ("1Table", 2)], stream=b"\x00" * 3 + text)
    assert office_macro_kind(data) is None
    assert blocked_type(data, "alt.doc", ALL) is None


# --- inside archives --------------------------------------------------------------------------


def test_blocked_members_of_archives_are_found_with_their_path() -> None:
    data = make_zip({"rechnung.pdf": b"%PDF-1.4", "rechnung.pdf.exe": pe()})
    assert blocked_in_archive(data, "post.zip", ALL, ArchiveLimits()) == \
        "blocked type: executable (PE) in post.zip/rechnung.pdf.exe"
    nested = make_zip({"inner.zip": make_zip({"formular.docx": ooxml("word/vbaProject.bin")})})
    assert blocked_in_archive(nested, "a.zip", ALL, ArchiveLimits()) == \
        "blocked type: office-macro (VBA project) in a.zip/inner.zip/formular.docx"
    script = make_zip({"rechnung.js": b"WScript.Echo(1);\r\n"})
    assert blocked_in_archive(script, "a.zip", ALL, ArchiveLimits()) == \
        "blocked type: script (.js) in a.zip/rechnung.js"


def test_clean_archives_pass_and_limits_still_apply() -> None:
    clean = make_zip({"a.txt": b"Hilfeplan", "b.docx": ooxml()})
    assert blocked_in_archive(clean, "a.zip", ALL, ArchiveLimits()) is None
    with pytest.raises(ArchiveRejected, match="nested deeper"):
        blocked_in_archive(make_zip({"b.zip": make_zip({"c.txt": b"x"})}), "a.zip", ALL,
                           ArchiveLimits(max_depth=1))


def test_a_zips_directory_is_read_once_for_every_type_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The executable and the macro check share the names (a 20,000-member zip costs a
    third of a second of CPU a reading); what they find is unchanged."""
    import scanning.content_types as content_types

    reads: list[int] = []
    original = content_types.read_zip_directory

    def counting(data: bytes, max_entries: int, where: str = "zip") -> list[ZipEntry]:
        reads.append(len(data))
        return original(data, max_entries, where)

    monkeypatch.setattr(content_types, "read_zip_directory", counting)
    docm = make_zip({"word/document.xml": b"<w/>", "word/vbaProject.bin": b"\x00"})
    both = {"executable", "office-macro", "script"}
    assert blocked_type(docm, "bericht.docm", both) == \
        "blocked type: office-macro (VBA project)"
    assert len(reads) == 1
    jar = make_zip({"A.class": b"\xca\xfe\xba\xbe"})
    assert blocked_type(jar, "a.jar", both) == "blocked type: executable (Java archive)"
    assert len(reads) == 2
