"""Does an encrypted PDF need a password to open?

A PDF may be encrypted for two reasons. Most encrypted PDFs an office receives (forms,
statements, court documents) only restrict printing or copying: they have an owner password
but an empty user password, so any reader, ClamAV included, opens them without asking. Those
are scannable. A PDF with a user password cannot be read without it: ClamAV sees ciphertext
and would answer "clean", so the scanner calls it UNSCANNABLE.

The check follows ISO 32000 (7.6.4, "standard security handler"): the user password check of
algorithm 6 for revisions 2-4 (RC4 and AES-128) and algorithm 11 for revisions 5 and 6
(AES-256, with the hardened hash of ISO 32000-2), tried with the empty password. Anything
that cannot be read (a broken dictionary, another security handler, a revision we do not
know) counts as needing a password: fail closed.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ENCRYPT_REF = re.compile(rb"/Encrypt\s*(?:(\d+)\s+(\d+)\s+R|(<<))")
_ID = re.compile(rb"/ID\s*\[")
_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")
_WHITESPACE = b"\x00\t\n\x0c\r "
_DELIMITERS = b"()<>[]{}/%"
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)")
_REF_TAIL = re.compile(rb"\s+(\d+)\s+R(?![A-Za-z])")
_MAX_DEPTH = 32

UNREADABLE = "password-protected PDF (its encryption dictionary cannot be read)"
LOCKED = "password-protected PDF"


class _Malformed(Exception):
    pass


class _Name(str):
    pass


def pdf_encryption(data: bytes) -> str | None:
    """None for a PDF that opens without a password (or is not encrypted), else the reason."""
    refs = list(_ENCRYPT_REF.finditer(data))
    if not refs:
        return None
    try:
        encrypt = _encrypt_dictionary(data, refs[-1])
        return _needs_password(encrypt, _first_id(data))
    except (_Malformed, IndexError, ValueError, TypeError, RecursionError):
        return UNREADABLE


def _encrypt_dictionary(data: bytes, ref: re.Match[bytes]) -> dict[str, Any]:
    if ref.group(3) is not None:
        value, _ = _object(data, ref.start(3), 0)
    else:
        number, generation = ref.group(1), ref.group(2)
        heads = list(re.finditer(rb"(?<![0-9])" + number + rb"\s+" + generation
                                 + rb"\s+obj\b\s*", data))
        if not heads:
            raise _Malformed
        value, _ = _object(data, heads[-1].end(), 0)
    if not isinstance(value, dict):
        raise _Malformed
    return value


def _first_id(data: bytes) -> bytes:
    """The first string of the trailer's /ID (the file identifier the key depends on)."""
    found = list(_ID.finditer(data))
    if not found:
        return b""
    value, _ = _object(data, found[-1].end() - 1, 0)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return value[0]
    return b""


def _needs_password(encrypt: dict[str, Any], file_id: bytes) -> str | None:
    handler = encrypt.get("Filter")
    if handler != "Standard":
        return f"encrypted PDF (security handler {handler or 'unknown'})"
    revision = _int(encrypt.get("R"))
    owner = _bytes(encrypt.get("O"))
    user = _bytes(encrypt.get("U"))
    if revision in (2, 3, 4):
        bits = encrypt.get("Length", 40 if revision == 2 else 128)
        length = 5 if revision == 2 else max(5, min(16, _int(bits) // 8))
        metadata = encrypt.get("EncryptMetadata", True) is not False
        key = _rc4_key(owner, _int(encrypt.get("P")), file_id, revision, length, metadata)
        opens = _user_check_rc4(key, user, file_id, revision)
    elif revision == 5:
        opens = len(user) >= 40 and hashlib.sha256(user[32:40]).digest() == user[:32]
    elif revision == 6:
        opens = len(user) >= 40 and _hash_2b(b"", user[32:40], b"") == user[:32]
    else:
        return f"encrypted PDF (security revision {revision} unknown)"
    return None if opens else LOCKED


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Malformed
    return int(value)


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise _Malformed
    return value


# --- the standard security handler -------------------------------------------------------------


def _rc4_key(owner: bytes, permissions: int, file_id: bytes, revision: int, length: int,
             metadata: bool) -> bytes:
    """Algorithm 2 with the empty (padded) user password."""
    digest = hashlib.md5(_PAD, usedforsecurity=False)
    digest.update(owner[:32])
    digest.update(struct.pack("<I", permissions & 0xFFFFFFFF))
    digest.update(file_id)
    if revision >= 4 and not metadata:
        digest.update(b"\xff\xff\xff\xff")
    key = digest.digest()
    if revision >= 3:
        for _ in range(50):
            key = hashlib.md5(key[:length], usedforsecurity=False).digest()
    return key[:length]


def _user_check_rc4(key: bytes, user: bytes, file_id: bytes, revision: int) -> bool:
    """Algorithms 4 and 5 (computing /U), compared with the stored value (algorithm 6)."""
    if revision == 2:
        return _rc4(key, _PAD) == user[:32]
    value = _rc4(key, hashlib.md5(_PAD + file_id, usedforsecurity=False).digest())
    for step in range(1, 20):
        value = _rc4(bytes(byte ^ step for byte in key), value)
    return value == user[:16]


def _rc4(key: bytes, data: bytes) -> bytes:
    # Small inputs only (32 bytes); RC4 is gone from OpenSSL 3's default provider.
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) & 0xFF
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + state[i]) & 0xFF
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) & 0xFF])
    return bytes(out)


def _hash_2b(password: bytes, salt: bytes, user_key: bytes) -> bytes:
    """ISO 32000-2 algorithm 2.B, the hardened hash of revision 6."""
    key = hashlib.sha256(password + salt + user_key).digest()
    round_ = 0
    while True:
        block = (password + key + user_key) * 64
        encryptor = Cipher(algorithms.AES(key[:16]), modes.CBC(key[16:32])).encryptor()
        encrypted = encryptor.update(block) + encryptor.finalize()
        choice = sum(encrypted[:16]) % 3
        key = (hashlib.sha256, hashlib.sha384, hashlib.sha512)[choice](encrypted).digest()
        round_ += 1
        if round_ >= 64 and encrypted[-1] <= round_ - 32:
            return key[:32]


# --- just enough of the PDF object syntax --------------------------------------------------------


def _skip(data: bytes, pos: int) -> int:
    size = len(data)
    while pos < size:
        byte = data[pos]
        if byte in _WHITESPACE:
            pos += 1
        elif byte == 0x25:  # % comment to the end of the line
            while pos < size and data[pos] not in b"\r\n":
                pos += 1
        else:
            break
    return pos


def _object(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise _Malformed
    pos = _skip(data, pos)
    if pos >= len(data):
        raise _Malformed
    if data.startswith(b"<<", pos):
        return _dictionary(data, pos + 2, depth)
    byte = data[pos:pos + 1]
    if byte == b"<":
        end = data.index(b">", pos)
        digits = bytes(c for c in data[pos + 1:end] if c not in _WHITESPACE)
        if len(digits) % 2:
            digits += b"0"
        return bytes.fromhex(digits.decode("ascii")), end + 1
    if byte == b"(":
        return _literal(data, pos + 1)
    if byte == b"[":
        items: list[Any] = []
        pos += 1
        while True:
            pos = _skip(data, pos)
            if data[pos:pos + 1] == b"]":
                return items, pos + 1
            item, pos = _object(data, pos, depth + 1)
            items.append(item)
    if byte == b"/":
        end = pos + 1
        while end < len(data) and data[end] not in _WHITESPACE and data[end] not in _DELIMITERS:
            end += 1
        return _Name(data[pos + 1:end].decode("latin-1")), end
    number = _NUMBER.match(data, pos)
    if number is not None:
        text = number.group()
        ref = _REF_TAIL.match(data, number.end())
        if ref is not None and text.isdigit():
            return ("ref", int(text), int(ref.group(1))), ref.end()
        value: int | float = float(text) if b"." in text else int(text)
        return value, number.end()
    for word, value_ in ((b"true", True), (b"false", False), (b"null", None)):
        if data.startswith(word, pos):
            return value_, pos + len(word)
    raise _Malformed


def _dictionary(data: bytes, pos: int, depth: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while True:
        pos = _skip(data, pos)
        if data.startswith(b">>", pos):
            return result, pos + 2
        key, pos = _object(data, pos, depth + 1)
        if not isinstance(key, _Name):
            raise _Malformed
        value, pos = _object(data, pos, depth + 1)
        result[str(key)] = value


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b",
            ord("f"): b"\f", ord("("): b"(", ord(")"): b")", ord("\\"): b"\\"}


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    nesting = 1
    size = len(data)
    while pos < size:
        byte = data[pos]
        pos += 1
        if byte == 0x5C:  # backslash
            if pos >= size:
                break
            escaped = data[pos]
            pos += 1
            if escaped in _ESCAPES:
                out += _ESCAPES[escaped]
            elif 0x30 <= escaped <= 0x37:
                digits = bytes([escaped])
                while len(digits) < 3 and pos < size and 0x30 <= data[pos] <= 0x37:
                    digits += data[pos:pos + 1]
                    pos += 1
                out.append(int(digits, 8) & 0xFF)
            elif escaped == 0x0D:  # a line continuation
                if pos < size and data[pos] == 0x0A:
                    pos += 1
            elif escaped != 0x0A:
                out.append(escaped)
        elif byte == 0x28:
            nesting += 1
            out.append(byte)
        elif byte == 0x29:
            nesting -= 1
            if nesting == 0:
                return bytes(out), pos
            out.append(byte)
        else:
            out.append(byte)
    raise _Malformed
