"""Encryption of stored content at rest.

Every blob gets its own AES-256-GCM data key. The data key is wrapped (RFC 3394 AES key wrap)
with the master key from the key file, so rotating the master key means rewrapping 40 bytes
per blob, not re-encrypting content. The caller's ``context`` (e.g. the queue id) is bound as
associated data: a sealed blob copied to another row does not open there.

Layout: MAGIC(4) | master key id(8) | wrapped data key(40) | nonce(12) | ciphertext+tag
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from crypto.errors import KeyFileError, SealError

MAGIC = b"XGS1"
_KEY_ID_LEN = 8
_WRAPPED_LEN = 40
_NONCE_LEN = 12
_TAG_LEN = 16
_HEADER_LEN = len(MAGIC) + _KEY_ID_LEN + _WRAPPED_LEN + _NONCE_LEN
KEY_BYTES = 32


@dataclass(frozen=True)
class MasterKey:
    key: bytes = b""

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise KeyFileError("master key must be 32 bytes")

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey(id={self.key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(b"xgate master key id" + self.key).digest()[:_KEY_ID_LEN]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        """Read a key file: 64 hex characters. Refuses files others can read."""
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise KeyFileError(f"master key file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"master key file unreadable: {path}: {exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"master key file {path} is accessible by group or others; chmod 600 it"
            )
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise KeyFileError(f"master key file {path}: expected 64 hex characters") from None
        if len(raw) != KEY_BYTES:
            raise KeyFileError(f"master key file {path}: expected 64 hex characters")
        return cls(raw)

    def write(self, path: Path) -> None:
        """Create the key file with mode 0600; never overwrites an existing key."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(self.key.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# From this size on, content is sealed in pieces (SealedStream) and opened in pieces.
STREAM_SEAL_BYTES = 1 << 20
_PIECE = 1 << 20


def seal(master: MasterKey, plaintext: bytes | bytearray | memoryview, context: bytes) -> bytes:
    return seal_pieces(master, (plaintext,), context)


def seal_pieces(master: MasterKey, pieces: Sequence[bytes | bytearray | memoryview],
                context: bytes) -> bytes:
    """``seal`` of the pieces one after another, without joining them first: the blob is
    the same as ``seal(master, b"".join(pieces), context)`` would make (a message with
    header fields put in front is filed so without a whole copy of it)."""
    size = sum(len(piece) for piece in pieces)
    if size >= STREAM_SEAL_BYTES:
        return SealedStream(master, pieces, context).whole()
    data_key, nonce, header = _new_header(master)
    plaintext = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    # The header is authenticated too, so the key id and wrapped key cannot be swapped.
    return header + AESGCM(data_key).encrypt(nonce, plaintext, header + context)


def _new_header(master: MasterKey) -> tuple[bytes, bytes, bytes]:
    """A fresh data key and nonce, and the blob's header that carries them."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_LEN)
    wrapped = aes_key_wrap(master.key, data_key)
    return data_key, nonce, MAGIC + master.key_id + wrapped + nonce


class SealedStream:
    """A sealed blob that is made while it is written: the plaintext's pieces are encrypted
    1 MiB at a time as ``chunks`` hands them out, so a large message never exists as
    plaintext and ciphertext at once (a 50 MB message held the SMTP edge and the worker at
    twice its size for that alone). Whoever stores it writes the chunks in order, e.g.
    into a blob of ``len(stream)`` zeros (gateway.db_blobs).

    The blob is the same layout as ``seal_pieces`` makes. Each ``chunks`` call seals afresh
    (new data key and nonce): a store that fails halfway and tries again never writes two
    different plaintexts under one nonce. The pieces must not change until it is stored.
    """

    def __init__(self, master: MasterKey,
                 pieces: Sequence[bytes | bytearray | memoryview], context: bytes) -> None:
        self._master = master
        self._pieces = tuple(pieces)
        self._context = context
        self._size = _HEADER_LEN + sum(len(piece) for piece in self._pieces) + _TAG_LEN

    def __len__(self) -> int:
        return self._size

    def chunks(self) -> Iterator[bytes]:
        """The blob from its first byte to its last, in pieces of at most about 1 MiB."""
        data_key, nonce, header = _new_header(master=self._master)
        encryptor = Cipher(algorithms.AES(data_key), modes.GCM(nonce)).encryptor()
        # The header is authenticated too, so the key id and wrapped key cannot be swapped.
        encryptor.authenticate_additional_data(header + self._context)
        yield header
        for piece in self._pieces:
            with memoryview(piece) as view:
                for start in range(0, len(view), _PIECE):
                    yield encryptor.update(view[start : start + _PIECE])
        yield encryptor.finalize() + encryptor.tag

    def whole(self) -> bytes:
        """The blob as one bytes object, built without a second whole copy: the pieces are
        encrypted into one buffer allocated at its final size; BytesIO hands that buffer
        out as the bytes object without copying it (CPython does when it is exactly full;
        if it ever copied, the result would be the same, only the peak higher)."""
        blob = _presized(self._size)
        for chunk in self.chunks():
            blob.write(chunk)
            del chunk  # not held while the next one is encrypted
        return blob.getvalue()


Sealed = bytes | SealedStream


def seal_later(master: MasterKey, pieces: Sequence[bytes | bytearray | memoryview],
               context: bytes) -> Sealed:
    """Small content sealed now; large content as a ``SealedStream`` for its store to write
    piece by piece."""
    if sum(len(piece) for piece in pieces) >= STREAM_SEAL_BYTES:
        return SealedStream(master, pieces, context)
    return seal_pieces(master, pieces, context)


def sealed_bytes(sealed: Sealed) -> bytes:
    """The whole blob, for a store that takes it only in one piece (PostgreSQL's bytea)."""
    return sealed if isinstance(sealed, bytes) else sealed.whole()


def open_sealed(master: MasterKey, blob: bytes | bytearray | memoryview,
                context: bytes) -> bytes:
    if len(blob) < _HEADER_LEN + _TAG_LEN:
        raise SealError("not a sealed blob or truncated")
    header = bytes(blob[:_HEADER_LEN])
    data_key, nonce = _data_key(master, header)
    try:
        # A view, not a slice: slicing a large blob would copy all of its ciphertext once
        # more just to hand it to OpenSSL.
        with memoryview(blob) as view:
            return AESGCM(data_key).decrypt(nonce, view[_HEADER_LEN:], header + context)
    except InvalidTag:
        raise SealError("sealed content failed authentication") from None


class BlobFile(Protocol):
    """Where a sealed blob is read from in pieces: SQLite's blob handle, a file."""

    def read(self, length: int = -1, /) -> bytes: ...

    def seek(self, offset: int, origin: int = 0, /) -> object: ...


def open_sealed_file(master: MasterKey, source: BlobFile, size: int, context: bytes) -> bytes:
    """``open_sealed`` of the ``size`` bytes in ``source``, read 1 MiB at a time: the
    ciphertext is never whole in memory beside the plaintext (a worker opening a 50 MB
    message held both). The plaintext is written into one buffer of its final size; none
    of it is returned unless the tag at the end authenticates all of it."""
    if size < _HEADER_LEN + _TAG_LEN:
        raise SealError("not a sealed blob or truncated")
    header = source.read(_HEADER_LEN)
    data_key, nonce = _data_key(master, header)
    source.seek(size - _TAG_LEN)
    tag = source.read(_TAG_LEN)
    if len(tag) != _TAG_LEN:
        raise SealError("not a sealed blob or truncated")
    source.seek(_HEADER_LEN)
    decryptor = Cipher(algorithms.AES(data_key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(header + context)
    left = size - _HEADER_LEN - _TAG_LEN
    plaintext = _presized(left)
    while left:
        chunk = source.read(min(_PIECE, left))
        if not chunk:
            raise SealError("not a sealed blob or truncated")
        plaintext.write(decryptor.update(chunk))
        left -= len(chunk)
    try:
        decryptor.finalize()
    except InvalidTag:
        raise SealError("sealed content failed authentication") from None
    return plaintext.getvalue()


def _presized(size: int) -> io.BytesIO:
    """A buffer allocated once at ``size`` bytes, positioned at its start: written through
    to its end, ``getvalue`` hands the buffer out without copying it."""
    buffer = io.BytesIO()
    if size:
        buffer.seek(size - 1)
        buffer.write(b"\0")
        buffer.seek(0)
    return buffer


def _data_key(master: MasterKey, header: bytes) -> tuple[bytes, bytes]:
    """The data key and nonce a blob's header carries, unwrapped with ``master``."""
    if len(header) < _HEADER_LEN or header[:len(MAGIC)] != MAGIC:
        raise SealError("not a sealed blob or truncated")
    key_id = header[len(MAGIC) : len(MAGIC) + _KEY_ID_LEN]
    if key_id != master.key_id:
        raise SealError("sealed with another master key")
    wrapped = header[len(MAGIC) + _KEY_ID_LEN : len(MAGIC) + _KEY_ID_LEN + _WRAPPED_LEN]
    try:
        return aes_key_unwrap(master.key, wrapped), header[-_NONCE_LEN:]
    except InvalidUnwrap:
        raise SealError("sealed content failed authentication") from None
