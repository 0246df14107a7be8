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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


# From this size on, content is sealed in pieces straight into the blob (see _seal_streamed).
STREAM_SEAL_BYTES = 1 << 20
_PIECE = 1 << 20


def seal(master: MasterKey, plaintext: bytes | bytearray | memoryview, context: bytes) -> bytes:
    return seal_pieces(master, (plaintext,), context)


def seal_pieces(master: MasterKey, pieces: Sequence[bytes | bytearray | memoryview],
                context: bytes) -> bytes:
    """``seal`` of the pieces one after another, without joining them first: the blob is
    the same as ``seal(master, b"".join(pieces), context)`` would make (a message with
    header fields put in front is filed so without a whole copy of it)."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_LEN)
    wrapped = aes_key_wrap(master.key, data_key)
    header = MAGIC + master.key_id + wrapped + nonce
    size = sum(len(piece) for piece in pieces)
    # The header is authenticated too, so the key id and wrapped key cannot be swapped.
    if size >= STREAM_SEAL_BYTES:
        return _seal_streamed(data_key, nonce, header, pieces, size, header + context)
    plaintext = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    return header + AESGCM(data_key).encrypt(nonce, plaintext, header + context)


def _seal_streamed(data_key: bytes, nonce: bytes, header: bytes,
                   pieces: Sequence[bytes | bytearray | memoryview], size: int,
                   associated: bytes) -> bytes:
    """The same blob as ``header + AESGCM.encrypt(...)`` (GCM, ciphertext then the 16-byte
    tag), built without a second whole copy: AESGCM returns the ciphertext as one object,
    and putting the header in front copies it again, so a 50 MB message briefly needed
    twice its size on top of the plaintext. Here 1 MiB pieces are encrypted into one
    buffer allocated at its final size; BytesIO hands that buffer out as the bytes object
    without copying it (CPython does when it is exactly full; if it ever copied, the
    result would be the same, only the peak higher)."""
    encryptor = Cipher(algorithms.AES(data_key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(associated)
    blob = io.BytesIO()
    blob.seek(len(header) + size + _TAG_LEN - 1)
    blob.write(b"\0")  # allocates the whole blob once
    blob.seek(0)
    blob.write(header)
    for piece in pieces:
        with memoryview(piece) as view:
            for start in range(0, len(view), _PIECE):
                blob.write(encryptor.update(view[start : start + _PIECE]))
    blob.write(encryptor.finalize())
    blob.write(encryptor.tag)
    return blob.getvalue()


def open_sealed(master: MasterKey, blob: bytes | bytearray | memoryview,
                context: bytes) -> bytes:
    if len(blob) < _HEADER_LEN + _TAG_LEN or bytes(blob[:len(MAGIC)]) != MAGIC:
        raise SealError("not a sealed blob or truncated")
    header = bytes(blob[:_HEADER_LEN])
    key_id = header[len(MAGIC) : len(MAGIC) + _KEY_ID_LEN]
    if key_id != master.key_id:
        raise SealError("sealed with another master key")
    wrapped = header[len(MAGIC) + _KEY_ID_LEN : len(MAGIC) + _KEY_ID_LEN + _WRAPPED_LEN]
    nonce = header[-_NONCE_LEN:]
    try:
        data_key = aes_key_unwrap(master.key, wrapped)
        # A view, not a slice: slicing a large blob would copy all of its ciphertext once
        # more just to hand it to OpenSSL.
        with memoryview(blob) as view:
            return AESGCM(data_key).decrypt(nonce, view[_HEADER_LEN:], header + context)
    except (InvalidUnwrap, InvalidTag):
        raise SealError("sealed content failed authentication") from None
