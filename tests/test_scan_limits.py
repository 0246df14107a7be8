"""The gateway's own archive limits (scanning.archives) on generated and tool-made hostile input.

Bombs are built at test time from one deflate stream reused many times; the few archives that
only real tools can write (ZipCrypto, WinZip AES, 7z) are embedded below, each made by the
command named beside it.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import shutil
import struct
import subprocess
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.settings import Settings
from scanning.archives import (
    ArchiveLimits,
    ArchiveRejected,
    archive_kind,
    check_archive,
    iter_members,
)
from scanning.archives.zip import read_zip_directory

T = TypeVar("T")
LIMITS = ArchiveLimits()
MiB = 1024 * 1024

# --- fixtures made by real tools ----------------------------------------------------------

# printf 'Hilfeplan Entwurf\n' > hilfeplan.txt; zip -P secret zipcrypto.zip hilfeplan.txt
ZIPCRYPTO_ZIP = base64.b64decode(
    "UEsDBAoACQAAAA9Bd13rDzfcHgAAABIAAAANABwAaGlsZmVwbGFuLnR4dFVUCQADfvQDa370A2t1eAsAAQQAAAAA"
    "BAAAAADfTato9gxcP8GXbiDNZKFoi48yaKePTV9h3+HXZNtQSwcI6w833B4AAAASAAAAUEsBAh4DCgAJAAAAD0F3"
    "XesPN9weAAAAEgAAAA0AGAAAAAAAAQAAAKSBAAAAAGhpbGZlcGxhbi50eHRVVAUAA370A2t1eAsAAQQAAAAABAAA"
    "AABQSwUGAAAAAAEAAQBTAAAAdQAAAAAA"
)
# 7zz a -tzip -psecret -mem=AES256 aes.zip hilfeplan.txt   (7-Zip 26.02)
AES_ZIP = base64.b64decode(
    "UEsDBDMAAQBjABBBd10AAAAALgAAABIAAAANAAsAaGlsZmVwbGFuLnR4dAGZBwACAEFFAwAAxTOaIas5eEoczWK1"
    "yFQ6lg/Haskl81TzO/toJJZ6ERt4NqQHm3X6vbiuP8rBR1BLAQI/AzMAAQBjABBBd10AAAAALgAAABIAAAANAC8A"
    "AAAAAAAAIICkgQAAAABoaWxmZXBsYW4udHh0CgAgAAAAAAABABgA+uyw0yF73QEAAAAAAAAAAAAAAAAAAAAAAZkH"
    "AAIAQUUDAABQSwUGAAAAAAEAAQBqAAAAZAAAAAAA"
)
# 7zz a plain.7z hilfeplan.txt notes.txt   (LZMA-compressed header)
PLAIN_7Z = base64.b64decode(
    "N3q8ryccAATZL++2jwAAAAAAAAAhAAAAAAAAAE2XE28BAB1IaWxmZXBsYW4gRW50d3VyZgpzZWNvbmQgZmlsZQoA"
    "AACBMweuD9As9LyfP0dBBwq+u4ROvmfUnAoi/HGrJlT61nTwtHIBmjfm2bwaLGwUxH/kEvdFKNOIT4parhP+JHoc"
    "9WqJvqlXHPmJrHpnNjkLpeVtYBHGYy8d9g9J7brpKMNWHIff/6a/OgAAABcGIgEJbQAHCwEAASMDAQEFXQAQAAAM"
    "gIYKAYch948AAA=="
)
# 7zz a -psecret content_enc.7z hilfeplan.txt   (names readable, content AES-encrypted)
CONTENT_ENC_7Z = base64.b64decode(
    "N3q8ryccAAS5ismhIAAAAAAAAAByAAAAAAAAAGl+tRr8fUKEOHB6bLx7SUlQlCf2Wx5wiulAucjg1AXn8wR6pAEE"
    "BgABCSAABwsBAAIkBvEHARJTD5U5PJ1aLwSykNao9nkrnLAhIQEAAQAMFhIACAoB6w833AAABQEZAQARHQBoAGkA"
    "bABmAGUAcABsAGEAbgAuAHQAeAB0AAAAFAoBAPrssNMhe90BFQYBACCApIEAAA=="
)
# 7zz a -psecret -mhe=on header_enc.7z hilfeplan.txt   (file names encrypted too)
HEADER_ENC_7Z = base64.b64decode(
    "N3q8ryccAARYDoYloAAAAAAAAAAvAAAAAAAAAKRh6wS804n6V6dfbyzO2EICOu1OgzEvmncPW1kSMyddcR0Ux9hw"
    "UgcsZOwanL7xuSOCKkNpvIpdHiu2jSgTrsc6/rpl57RgI+odFt5Hizf+k8/QToCl4Ey+aKpm4/Ccsj2NoSYMBc+X"
    "Yu5BOGpyxVKncvJrxjg7uVn/HTcT8g5LP0CQWN6yWSDgG33NltCq0SsML+02CUfh25D8k8q6lb+gfwU7FwYgAQmA"
    "gAAHCwEAASQG8QcBElMP1yxGZBNgsWwD/ossA+JFjwxyCgH+2zxaAAA="
)
# mkdir m30; for i in $(seq 1 30); do echo $i > m30/f$i.txt; done; 7zz a m30.7z m30
M30_7Z = base64.b64decode(
    "N3q8ryccAARJUs8ecwEAAAAAAAAiAAAAAAAAAIarfLTgAFAAPV0AGIKCaY02DJfJSXWaLEvDzUMslY1arcWiVi0P"
    "yefBIMvWMx5u1qhgo03AkTAfKyVFWCib5w8CEDjps474IAAAAIEzB64P0jOAPUDAkNL/fWlNhsGpqQ1CLFpFl8Id"
    "V0vpE1jORfEfXGjVQ5L2Ig0DPTtt16Y2+b5oQ8oKVPdegPvHQInUusUSi02ITGPlmDuTkWTQfhhzofMLFNxhQQJ8"
    "oyg7ov2SJxoqKA9bSd7+yCIcL03w/QkTDYQ+RBmTN793zzz5TUmtnESzCtFfKWmoIA78zhq/WG62IAu9b69C+N2B"
    "JEz3aBjHyt1qpyFfGH8e0rd2sdKJ8B2Z3QuImOjE+uqhYbvx+9ujElSSQ3fAVbM44KuVoBQeDa5ptMeNXErxSQpk"
    "vc2pYGgsKZu1LJEb3g/rwBytXuettmKB4uapg+d2V7qn+PQqx5bJFWsM4vx+irSmaolYKtEY3Bc0WORCfc27jy44"
    "eg+mVAAAABcGRQEJgS4ABwsBAAEjAwEBBV0AEAAADIUKCgEJcoZRAAA="
)
# 7zz a -mx=0 -spf abs.7z /tmp/fx/hilfeplan.txt   (an absolute member name, plain header)
ABS_7Z = base64.b64decode(
    "N3q8ryccAAQz78U3FgAAAAAAAAByAAAAAAAAAH15KVkBABFIaWxmZXBsYW4gRW50d3VyZgoAAQQGAAEJFgAHCwEA"
    "ASEhAQAMEgAICgHrDzfcAAAFARkMAAAAAAAAAAAAAAAAES0ALwB0AG0AcAAvAGYAeAAvAGgAaQBsAGYAZQBwAGwA"
    "YQBuAC4AdAB4AHQAAAAUCgEA+uyw0yF73QEVBgEAIICkgQAA"
)
# head -c 5000000 /dev/zero > zeros.bin; 7zz a -mx=9 zeros.7z zeros.bin   (a small 7z bomb)
ZEROS_7Z = base64.b64decode(
    "N3q8ryccAARd3sAbIQMAAAAAAABaAAAAAAAAABgidcn/95oBa10AAG/9//+jt/9HPkgVcjlhUbiSKOajhgf57uQe"
    "gtMvxTo8AUuxfsmKik0vow3Zf6bjjCMRU+BZGMV1iuJ3+LaUfwxqwN50SWTi6VxTsgTY90QMq18NbUbp5cN2iLeW"
    "V6y2TeFpHW/7S4gQbELLiD9cAI/QTq8mKJRxHz2PJOFwnqcjX+woy4XRlZiKfiqR8id19xnABphNmP3Yr9WQD8Ql"
    "U/j1kTYxBaWw7m/BcE1HDNGREaqtYB26zrEnGFxZhulmUli+6XasWeTlWwUI+cfarfz7Uit0zR5bIEL53VM9+Clk"
    "CTuAyyps37U78MS9Ll+qDz5LZkKQEw7/EJP4cXhZ+AvN/5UoRg+p/Hze+5owLlbAj4Xzg4HAZcQlU/j1kTYxBaWw"
    "7m/BcE1HDNGREaqtYB26zrEnGFxZhulmUli+6XasWeTlWwUI+cfarfz7Uit0zR5bIEL53VM9+ClkCTuAyyps37U7"
    "8MS5K+qXn/eZASsA7HNTp/2+rnwxGp+3jTFucJ6nI1/sKMuF0ZWYin4qkfIndfcZwAaYTZj92K/VkA/EJVP49ZE2"
    "MQWlsO5vwXBNRwzRkRGqrWAdus6xJxhcWYbpZlJYvul2rFnk5VsFCPnH2q38+1IrdM0eWyBC+d1TPfgpZAk7gMsq"
    "bN+1O/DEvS5fqg8+S2ZCkBMO/xCT+HF4WfgLzf+VKEYPqfx83vuaMC5WwI+F84OBwGXEJVP49ZE2MQWlsO5vwXBN"
    "RwzRkRGqrWAdus6xJxhcWYbpZlJYvul2rFnk5VsFCPnH2q38+1IrdM0eWyBC+d1TPfgpZAk7gMsqbN+1O/DEvS5f"
    "qg8+S2ZCkBMO/xCT+HF4WfgLzf+VKEYPqfx83vuaMC5WwI+F84OBwGXEJUb8HlKMXAoAdwDsc1On/b6ufDEan7eN"
    "MW5wnqcjX+woy4XRlZiKfiqR8id19xnABphNmP3Yr9WQD8QlU/j1kTYxBaWw7m/BcE1HDNGREaqtYB26zrEnGFxZ"
    "hulmUli+6XasWeTlWwUI+cfarfz7Uit0zR5bIEL53VM9+CkucvqpAAABBAYAAQmDIQAHCwEAASEhARUM4EBLTAAI"
    "CgFlR88vAAAFARkIAAAAAAAAAAARFQB6AGUAcgBvAHMALgBiAGkAbgAAABQKAQDcJFN+InvdARUGAQAggKSBAAA="
)


# --- builders -----------------------------------------------------------------------------


def make_zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@dataclass
class RawMember:
    """A zip member written byte by byte: for what zipfile will not write."""

    name: bytes
    payload: bytes  # as stored, i.e. compressed
    method: int = 0
    crc: int = 0
    size: int = 0
    flags: int = 0


def raw_zip(members: list[RawMember], *, declared_total: int | None = None,
            central_sizes: dict[bytes, int] | None = None,
            local_names: dict[bytes, bytes] | None = None) -> bytes:
    out = bytearray()
    central = bytearray()
    for member in members:
        offset = len(out)
        local_name = (local_names or {}).get(member.name, member.name)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, member.flags, member.method, 0, 0,
                           member.crc, len(member.payload), member.size, len(local_name), 0)
        out += local_name + member.payload
        csize = (central_sizes or {}).get(member.name, len(member.payload))
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, member.flags,
                               member.method, 0, 0, member.crc, csize, member.size,
                               len(member.name), 0, 0, 0, 0, 0, offset)
        central += member.name
    count = len(members)
    total = count if declared_total is None else declared_total
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFE),
                      min(total, 0xFFFE), len(central), len(out), 0)
    return bytes(out + central + end)


def deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes and their CRC, built in 1 MiB steps."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    parts = [compressor.compress(chunk) for _ in range(size // MiB)]
    parts.append(compressor.flush())
    crc = 0
    for _ in range(size // MiB):
        crc = zlib.crc32(chunk, crc)
    return b"".join(parts), crc


def nested_bomb(levels: int, copies: int = 16, leaf_size: int = 10 * MiB) -> bytes:
    """42.zip's shape: ``copies`` files of zeros, zipped, then zipped ``copies`` times over."""
    stream, crc = deflated_zeros(leaf_size)
    archive = raw_zip([RawMember(f"{i}.bin".encode(), stream, 8, crc, leaf_size)
                       for i in range(copies)])
    for _ in range(levels - 1):
        archive = make_zip({f"lib{i}.zip": archive for i in range(copies)})
    return archive


def nested_zips(depth: int) -> bytes:
    archive = make_zip({"innermost.txt": b"Hilfeplan"})
    for level in range(depth - 1):
        archive = make_zip({f"level{level}.zip": archive})
    return archive


def peak_memory(action: Callable[[], T]) -> tuple[T, int]:
    tracemalloc.start()
    try:
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# --- within the limits ----------------------------------------------------------------------


def test_from_settings_takes_the_scanning_section() -> None:
    scanning = Settings().scanning.model_copy(update={
        "max_uncompressed_bytes": 1234, "max_compression_ratio": 7,
        "max_archive_members": 9, "max_archive_depth": 3})
    limits = ArchiveLimits.from_settings(scanning)
    assert (limits.max_uncompressed_bytes, limits.max_compression_ratio, limits.max_members,
            limits.max_depth) == (1234, 7, 9, 3)
    default = ArchiveLimits.from_settings(Settings().scanning)
    assert default.max_members == Settings().scanning.max_archive_members


def test_data_that_is_no_archive_is_within_limits() -> None:
    assert check_archive(b"%PDF-1.7\n" + bytes(5000), "bericht.pdf", LIMITS) is None
    assert check_archive(b"", "leer.txt", LIMITS) is None
    assert list(iter_members(b"plain text", "x.txt", LIMITS)) == []


def test_an_ordinary_zip_passes_and_its_members_come_out_decompressed() -> None:
    members = {"bericht.txt": b"Hilfeplan " * 500, "anlagen/foto.bin": bytes(range(256)) * 40}
    data = make_zip(members)
    assert archive_kind(data) == "zip"
    assert check_archive(data, "akte.zip", LIMITS) is None
    assert dict(iter_members(data, "akte.zip", LIMITS)) == {
        f"akte.zip/{name}": content for name, content in members.items()}


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_every_zip_method_the_stdlib_writes_is_read(method: int) -> None:
    data = make_zip({"a.txt": b"abc" * 1000}, method)
    assert check_archive(data, "a.zip", LIMITS) is None
    assert list(iter_members(data, "a.zip", LIMITS)) == [("a.zip/a.txt", b"abc" * 1000)]


def test_a_small_very_compressible_file_is_below_the_ratio_floor() -> None:
    data = make_zip({"formular.txt": bytes(900 * 1024)})  # ratio ~1000:1, but under 1 MiB
    assert check_archive(data, "formular.zip", LIMITS) is None


def test_nested_members_are_yielded_before_their_own_members() -> None:
    inner = make_zip({"a.txt": b"A"})
    outer = make_zip({"inner.zip": inner, "b.txt": b"B"})
    assert [path for path, _ in iter_members(outer, "o.zip", LIMITS)] == [
        "o.zip/inner.zip", "o.zip/inner.zip/a.txt", "o.zip/b.txt"]


def test_a_self_extracting_zip_is_found_from_its_end() -> None:
    stub = b"MZ" + bytes(4000)
    assert check_archive(stub + make_zip({"a.txt": b"fine"}), "setup.exe", LIMITS) is None
    assert "encrypted" in (check_archive(stub + ZIPCRYPTO_ZIP, "setup.exe", LIMITS) or "")
    many = make_zip({f"{i}.txt": b"x" for i in range(11)})
    assert check_archive(stub + many, "setup.exe", ArchiveLimits(max_members=10)) == \
        "setup.exe: more than 10 archive members (11)"


def test_an_end_record_by_chance_does_not_make_a_zip() -> None:
    data = b"%PDF-1.7\n" + bytes(3000) + b"PK\x05\x06" + bytes(18)
    assert check_archive(data, "x.pdf", LIMITS) is None


# --- encryption -----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [ZIPCRYPTO_ZIP, AES_ZIP], ids=["zipcrypto", "winzip-aes"])
def test_password_protected_zips_made_by_real_tools_are_refused(data: bytes) -> None:
    reason = check_archive(data, "rechnung.zip", LIMITS)
    assert reason == "rechnung.zip: encrypted archive member 'hilfeplan.txt'"


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP's zip is not installed")
def test_a_zip_encrypted_by_zip_here_and_now_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("geheim")
    subprocess.run(["zip", "-q", "-P", "pw", "x.zip", "a.txt"], cwd=tmp_path, check=True)
    data = (tmp_path / "x.zip").read_bytes()
    assert "encrypted archive member" in (check_archive(data, "x.zip", LIMITS) or "")


def test_an_encrypted_zip_inside_a_plain_one_is_refused() -> None:
    reason = check_archive(make_zip({"inner.zip": ZIPCRYPTO_ZIP}), "outer.zip", LIMITS)
    assert reason == "outer.zip/inner.zip: encrypted archive member 'hilfeplan.txt'"


def test_the_encryption_flag_alone_is_enough() -> None:
    data = raw_zip([RawMember(b"a.txt", b"\x00" * 24, flags=0x0001, size=12)])
    assert "encrypted archive member 'a.txt'" in (check_archive(data, "a.zip", LIMITS) or "")


# --- counts, depth, size and ratio ----------------------------------------------------------


def test_a_zip_with_20000_members_is_refused_from_its_directory() -> None:
    members = [RawMember(f"f{i}.txt".encode(), b"x") for i in range(20_000)]
    data = raw_zip(members)
    reason, peak = peak_memory(lambda: check_archive(data, "viele.zip", LIMITS))
    assert reason == "viele.zip: more than 1000 archive members (20000)"
    assert peak < MiB  # nothing was read beyond the end record


def test_a_directory_that_understates_its_count_is_still_counted() -> None:
    members = [RawMember(f"f{i}.txt".encode(), b"x") for i in range(20_000)]
    data = raw_zip(members, declared_total=5)
    reason, peak = peak_memory(lambda: check_archive(data, "viele.zip", LIMITS))
    assert reason == "viele.zip: more than 1000 archive members"
    assert peak < 4 * MiB


def test_members_limit_plus_one() -> None:
    limits = ArchiveLimits(max_members=10)
    assert check_archive(make_zip({f"{i}": b"" for i in range(10)}), "z", limits) is None
    assert check_archive(make_zip({f"{i}": b"" for i in range(11)}), "z", limits) \
        == "z: more than 10 archive members (11)"


def test_members_are_counted_over_all_nesting_levels() -> None:
    inner = make_zip({f"{i}.txt": b"x" for i in range(8)})
    outer = make_zip({f"{i}.zip": inner for i in range(8)})  # 8 + 64 members
    assert "more than 50 archive members in all" in (
        check_archive(outer, "o.zip", ArchiveLimits(max_members=50)) or "")


def test_a_zip_nested_20_deep_is_refused_at_the_depth_limit() -> None:
    data = nested_zips(20)
    reason = check_archive(data, "tief.zip", LIMITS)
    assert reason is not None
    assert reason.endswith("archives nested deeper than 5 levels")
    assert reason.count("/") == 5  # refused at the sixth archive, not the twentieth
    assert check_archive(data, "tief.zip", ArchiveLimits(max_depth=20)) is None


def test_depth_limit_plus_one() -> None:
    limits = ArchiveLimits(max_depth=3)
    assert check_archive(nested_zips(3), "z.zip", limits) is None
    assert "nested deeper than 3" in (check_archive(nested_zips(4), "z.zip", limits) or "")


def test_a_42_zip_style_bomb_is_refused_quickly_in_little_memory() -> None:
    bomb = nested_bomb(levels=5)  # 16**5 files of 10 MiB: 10 TiB if unpacked
    assert len(bomb) < 2 * MiB
    reason, peak = peak_memory(lambda: check_archive(bomb, "42.zip", LIMITS))
    assert reason is not None and "compression ratio over 100:1" in reason
    assert peak < 4 * MiB


def test_the_same_bomb_without_a_ratio_limit_stops_at_the_byte_limit() -> None:
    bomb = nested_bomb(levels=3)
    limits = ArchiveLimits(max_uncompressed_bytes=50 * MiB, max_compression_ratio=10**9)
    reason, peak = peak_memory(lambda: check_archive(bomb, "42.zip", limits))
    assert reason is not None and f"more than {50 * MiB} bytes uncompressed" in reason
    assert peak < 4 * MiB


def test_iter_members_stops_a_bomb_too() -> None:
    bomb = nested_bomb(levels=2)
    seen = []
    with pytest.raises(ArchiveRejected, match="compression ratio"):
        for path, _ in iter_members(bomb, "42.zip", LIMITS):
            seen.append(path)
    assert len(seen) < 16 * 16


def test_a_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(bytes(64 * MiB))
    reason, peak = peak_memory(lambda: check_archive(bomb, "log.gz", LIMITS))
    assert reason == "log.gz/log: compression ratio over 100:1"
    assert peak < 4 * MiB


def test_a_bomb_of_concatenated_gzip_members_is_refused() -> None:
    bomb = gzip.compress(bytes(4 * MiB)) * 200  # one file of 800 MiB to gunzip
    assert "compression ratio" in (check_archive(bomb, "x.gz", LIMITS) or "")


@pytest.mark.parametrize("compress", [bz2.compress, lambda data: lzma.compress(data, preset=0)],
                         ids=["bzip2", "xz"])
def test_bzip2_and_xz_bombs_are_refused(compress: Callable[[bytes], bytes]) -> None:
    bomb = compress(bytes(20 * MiB))
    reason, peak = peak_memory(lambda: check_archive(bomb, "x", LIMITS))
    assert "compression ratio" in (reason or "")
    assert peak < 4 * MiB


def test_a_bzip2_member_in_a_zip_is_bounded_too() -> None:
    data = make_zip({"zeros": bytes(30 * MiB)}, zipfile.ZIP_BZIP2)
    assert "compression ratio" in (check_archive(data, "b.zip", LIMITS) or "")


def test_overlapping_members_are_refused() -> None:
    # The heart of the non-recursive zip bomb: entries whose data overlap.
    first = RawMember(b"a", b"A" * 10)
    second = RawMember(b"b", b"B" * 10)
    data = raw_zip([first, second], central_sizes={b"a": 10 + 30 + 1 + 10})
    assert "overlapping archive members 'a' and 'b'" in (check_archive(data, "o.zip", LIMITS)
                                                         or "")


# --- structure --------------------------------------------------------------------------------


def test_zip64_records_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, \
            archive.open("big.bin", "w", force_zip64=True) as member:
        member.write(b"small really")
    assert check_archive(buffer.getvalue(), "z.zip", LIMITS) == "z.zip: zip64 records"


@pytest.mark.parametrize("name", ["../../etc/cron.d/x", "/etc/passwd", "C:/Windows/x.dll",
                                  "c:evil", "a\\..\\..\\b", "\\\\server\\share\\x",
                                  "ok/../../x"])
def test_traversing_and_absolute_member_names_are_refused(name: str) -> None:
    data = raw_zip([RawMember(name.encode(), b"x", size=1, crc=zlib.crc32(b"x"))])
    reason = check_archive(data, "p.zip", LIMITS)
    assert reason is not None and reason.startswith(f"p.zip: member name {name!r} has")


def test_harmless_names_with_dots_pass() -> None:
    data = make_zip({"..hidden": b"x", "a..b/c.txt": b"y", "./x": b"z"})
    assert check_archive(data, "p.zip", LIMITS) is None


def test_local_and_central_headers_must_agree() -> None:
    data = raw_zip([RawMember(b"harmless.txt", b"x")],
                   local_names={b"harmless.txt": b"evil.exe_xx!"})
    assert "local and central zip headers disagree" in (check_archive(data, "z", LIMITS) or "")


def test_a_directory_count_that_disagrees_with_the_entries_is_refused() -> None:
    data = raw_zip([RawMember(b"a", b"x"), RawMember(b"b", b"y")], declared_total=1)
    assert check_archive(data, "z", LIMITS) == \
        "z: zip directory holds 2 entries, its end record says 1"


def test_unknown_compression_methods_are_refused() -> None:
    data = raw_zip([RawMember(b"a.bin", b"\x00" * 50, method=9, size=500)])  # deflate64
    assert check_archive(data, "z", LIMITS) == "z/a.bin: unsupported compression method 9"


def test_truncated_and_corrupt_zips_are_refused() -> None:
    data = make_zip({"a.txt": b"Hilfeplan " * 100})
    assert "unreadable zip archive" in (check_archive(data[:-30], "z", LIMITS) or "")
    corrupt = bytearray(data)
    start = 30 + len("a.txt")
    corrupt[start:start + 8] = b"\xff" * 8
    assert "corrupt compressed data" in (check_archive(bytes(corrupt), "z", LIMITS) or "")


def test_read_zip_directory_lists_names() -> None:
    data = make_zip({"word/document.xml": b"<w/>", "word/vbaProject.bin": b"x"})
    assert [e.name for e in read_zip_directory(data, 10)] == [
        "word/document.xml", "word/vbaProject.bin"]


# --- tar and single streams -----------------------------------------------------------------


def make_tar(members: list[tarfile.TarInfo], contents: dict[str, bytes] | None = None,
             mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for info in members:
            content = (contents or {}).get(info.name, b"")
            info.size = len(content) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return buffer.getvalue()


def test_tar_and_compressed_tar_pass_and_list_their_members() -> None:
    content = {"akte/bericht.txt": b"Bericht " * 1000}
    for mode, name in (("w", "a.tar"), ("w:gz", "a.tar.gz"), ("w:bz2", "a.tbz"),
                       ("w:xz", "a.tar.xz")):
        data = make_tar([tarfile.TarInfo("akte/bericht.txt")], content, mode)
        assert check_archive(data, name, LIMITS) is None, mode
        members = dict(iter_members(data, name, LIMITS))
        assert b"Bericht " * 1000 in members.values(), mode


def test_tar_gz_counts_two_levels() -> None:
    data = make_tar([tarfile.TarInfo("a.txt")], {"a.txt": b"x"}, "w:gz")
    assert check_archive(data, "a.tgz", ArchiveLimits(max_depth=2)) is None
    assert "nested deeper than 1" in (check_archive(data, "a.tgz", ArchiveLimits(max_depth=1))
                                      or "")
    assert [p for p, _ in iter_members(data, "a.tgz", LIMITS)] == ["a.tgz/a.tar",
                                                                    "a.tgz/a.tar/a.txt"]


def test_tar_with_an_absolute_name_is_refused() -> None:
    data = make_tar([tarfile.TarInfo("/etc/passwd")], {"/etc/passwd": b"root:x"})
    assert check_archive(data, "t.tar", LIMITS) == \
        "t.tar: member name '/etc/passwd' has an absolute path"


def test_tar_with_a_symlink_out_of_the_tree_is_refused() -> None:
    link = tarfile.TarInfo("docs")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../home"
    reason = check_archive(make_tar([link]), "t.tar", LIMITS)
    assert reason == "t.tar: member name 'docs' has a link target with a '..' component"


def test_tar_members_limit_plus_one() -> None:
    infos = [tarfile.TarInfo(f"f{i}") for i in range(11)]
    assert check_archive(make_tar(infos[:10]), "t.tar", ArchiveLimits(max_members=10)) is None
    assert check_archive(make_tar(infos), "t.tar", ArchiveLimits(max_members=10)) == \
        "t.tar: more than 10 archive members"


def test_data_hidden_after_the_end_of_a_tar_is_refused() -> None:
    data = make_tar([tarfile.TarInfo("a.txt")], {"a.txt": b"x"})
    tail = make_tar([tarfile.TarInfo("hidden.exe")], {"hidden.exe": b"MZ"})
    assert "data after the end of the tar archive" in (
        check_archive(data + b"\xff" * 512 + tail, "t.tar", LIMITS) or "")


def test_a_truncated_tar_is_refused() -> None:
    data = make_tar([tarfile.TarInfo("a.bin")], {"a.bin": bytes(range(256)) * 40})
    assert check_archive(data[:3000], "t.tar", LIMITS) == "t.tar/a.bin: truncated tar member"


def test_a_truncated_gzip_is_refused() -> None:
    data = gzip.compress(b"Hilfeplan " * 10_000)
    assert check_archive(data, "a.gz", LIMITS) is None
    assert check_archive(data[: len(data) // 2], "a.gz", LIMITS) == \
        "a.gz/a: truncated compressed data"


# --- formats left to ClamAV -----------------------------------------------------------------


def test_a_plain_7z_is_left_to_clamav() -> None:
    assert archive_kind(PLAIN_7Z) == "7z"
    assert check_archive(PLAIN_7Z, "a.7z", LIMITS) is None
    assert list(iter_members(PLAIN_7Z, "a.7z", LIMITS)) == []


def test_7z_encryption_is_recognised_with_and_without_encrypted_headers() -> None:
    assert check_archive(CONTENT_ENC_7Z, "a.7z", LIMITS) == "a.7z: encrypted archive member (7z)"
    assert check_archive(HEADER_ENC_7Z, "a.7z", LIMITS) == \
        "a.7z: encrypted archive (7z with encrypted headers)"


def test_7z_file_count_names_and_declared_sizes_are_checked() -> None:
    assert check_archive(M30_7Z, "a.7z", ArchiveLimits(max_members=40)) is None
    assert check_archive(M30_7Z, "a.7z", ArchiveLimits(max_members=10)) == \
        "a.7z: more than 10 archive members (31, 7z)"
    assert "absolute path" in (check_archive(ABS_7Z, "a.7z", LIMITS) or "")
    assert check_archive(ZEROS_7Z, "a.7z", LIMITS) == "a.7z: compression ratio over 100:1 (7z)"


def test_a_truncated_or_corrupt_7z_is_refused() -> None:
    assert "truncated" in (check_archive(PLAIN_7Z[:-20], "a.7z", LIMITS) or "")
    corrupt = bytearray(PLAIN_7Z)
    corrupt[-5] ^= 0xFF
    assert "header CRC" in (check_archive(bytes(corrupt), "a.7z", LIMITS) or "")


def test_a_7z_inside_a_zip_is_checked_too() -> None:
    data = make_zip({"inner.7z": HEADER_ENC_7Z})
    assert check_archive(data, "o.zip", LIMITS) == \
        "o.zip/inner.7z: encrypted archive (7z with encrypted headers)"


def rar5(first_header_type: int) -> bytes:
    header = bytes([first_header_type, 0]) + b"\x00" * 4
    return b"Rar!\x1a\x07\x01\x00" + struct.pack("<L", zlib.crc32(header)) \
        + bytes([len(header)]) + header


def rar4(main_flags: int) -> bytes:
    main = struct.pack("<HBHH", 0, 0x73, main_flags, 13) + b"\x00" * 6
    return b"Rar!\x1a\x07\x00" + main


def test_rar_header_encryption_is_recognised() -> None:
    # Built to the RAR 4 and RAR 5 format documents: no free tool writes RAR.
    assert check_archive(rar5(1), "a.rar", LIMITS) is None
    assert check_archive(rar5(4), "a.rar", LIMITS) == \
        "a.rar: encrypted archive (RAR with encrypted headers)"
    assert check_archive(rar4(0x0000), "a.rar", LIMITS) is None
    assert check_archive(rar4(0x0080), "a.rar", LIMITS) == \
        "a.rar: encrypted archive (RAR with encrypted headers)"


def cab(names: list[str], size: int = 10, flags: int = 0) -> bytes:
    entries = b"".join(struct.pack("<LLHHHH", size, 0, 0, 0, 0, 0) + n.encode() + b"\x00"
                       for n in names)
    header = struct.pack("<4sLLLLLBBHHHHH", b"MSCF", 0, 36 + len(entries), 0, 36, 0, 3, 1, 1,
                         len(names), flags, 0, 0)
    return header + entries


def test_cabinet_counts_names_and_sets_are_checked() -> None:
    assert check_archive(cab(["a.txt", "b.txt"]), "a.cab", LIMITS) is None
    assert check_archive(cab(["a"] * 11), "a.cab", ArchiveLimits(max_members=10)) == \
        "a.cab: more than 10 archive members (11, cabinet)"
    assert "'..' component" in (check_archive(cab(["..\\x.dll"]), "a.cab", LIMITS) or "")
    assert check_archive(cab(["a"], flags=2), "a.cab", LIMITS) == \
        "a.cab: cabinet is one of a set of several"
    assert "declares" in (check_archive(cab(["a"], size=300 * MiB), "a.cab", LIMITS) or "")


# --- damaged input --------------------------------------------------------------------------


def _seeds() -> list[bytes]:
    text = b"Hilfeplan " * 300
    return [
        ZIPCRYPTO_ZIP, PLAIN_7Z, CONTENT_ENC_7Z, M30_7Z, ZEROS_7Z, rar5(1), rar4(0),
        cab(["a", "b"]),
        make_zip({"a.txt": text, "b/c.zip": make_zip({"d": text})}),
        make_zip({"a": text}, zipfile.ZIP_BZIP2), make_zip({"a": text}, zipfile.ZIP_LZMA),
        make_tar([tarfile.TarInfo("a.txt")], {"a.txt": text}, "w:gz"),
        make_tar([tarfile.TarInfo("a.txt")], {"a.txt": text}, "w:xz"),
        bz2.compress(text), nested_bomb(2, copies=2, leaf_size=2 * MiB),
    ]


SEEDS = _seeds()


@settings(max_examples=300, deadline=None)
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255),
                                st.sampled_from(["set", "cut", "insert"])), max_size=6))
def test_damaged_archives_give_a_reason_or_none_never_an_error(
        seed: bytes, edits: list[tuple[float, int, str]]) -> None:
    data = bytearray(seed)
    for where, value, how in edits:
        at = int(where * len(data))
        if how == "set" and data:
            data[at] = value
        elif how == "cut":
            del data[at:at + value // 8 + 1]
        else:
            data[at:at] = bytes([value]) * (value // 16 + 1)
    damaged = bytes(data)
    reason = check_archive(damaged, "x", LIMITS)
    assert reason is None or isinstance(reason, str)
    try:
        for _ in iter_members(damaged, "x", LIMITS):
            pass
    except ArchiveRejected as exc:
        assert exc.reason
