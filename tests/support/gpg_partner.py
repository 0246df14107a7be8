"""The partner agency's side of OpenPGP: the real ``gpg`` CLI with a GNUPGHOME of its own.

Tests use it the way a partner's mail client would use GnuPG: generate keys, exchange public
keys as armored exports, encrypt and sign (PGP/MIME or inline), and decrypt and verify what
the gateway sends back. Nothing here imports the code under test.

    with GpgPartner.create(tmp_path / "partner") as partner:
        fpr = partner.generate("Jugendamt Nord <asd@ja-nord.example>", "cv25519")
        cert = partner.export_public(fpr)          # hand this to the gateway
        partner.import_keys(gateway_cert)           # and learn the gateway's key
        mail = partner.pgp_mime_encrypted(entity, [gateway_fpr], signer=fpr)
        outcome = partner.decrypt(reply)            # GpgOutcome: stdout + status lines
        assert outcome.has("GOODSIG")

Keys are generated without passphrase. ``generate(..., at=...)`` uses gpg's
``--faked-system-time`` to make keys (and then signatures) in the past, e.g. expired keys.
Call ``close()`` (or use the context manager) to stop the home's gpg-agent.
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path
from types import TracebackType
from typing import Literal

KeyKind = Literal["rsa2048", "rsa3072", "rsa4096", "cv25519"]
SignMode = Literal["detached", "clear", "inline"]
TIMEOUT = 120  # RSA key generation on a loaded CI machine; everything else takes < 1 s
_NO_PASSPHRASE = ("--pinentry-mode", "loopback", "--passphrase", "")


@dataclass(frozen=True)
class GpgOutcome:
    """What one gpg run produced: exit code, stdout and the ``[GNUPG:]`` status lines."""

    returncode: int
    stdout: bytes
    stderr: str
    status: tuple[tuple[str, tuple[str, ...]], ...]

    def has(self, keyword: str) -> bool:
        return any(k == keyword for k, _ in self.status)

    def args(self, keyword: str) -> tuple[str, ...] | None:
        """Arguments of the first status line with ``keyword``, or None."""
        return next((a for k, a in self.status if k == keyword), None)


class GpgPartner:
    """A partner agency's GnuPG installation (its own home directory)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    @classmethod
    def create(cls, home: Path) -> GpgPartner:
        # Keep the path short: gpg-agent's socket lives in the home and must fit sun_path.
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        return cls(home)

    def __enter__(self) -> GpgPartner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop this home's gpg-agent (started on demand by gpg)."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, timeout=TIMEOUT, check=False)

    # --- raw ----------------------------------------------------------------------------------

    def run(self, *args: str, data: bytes | None = None, check: bool = True) -> GpgOutcome:
        """Run ``gpg --batch`` in this home with status lines on stderr."""
        proc = subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--no-tty", "--status-fd", "2",
             "--trust-model", "always", *args],
            input=data, capture_output=True, timeout=TIMEOUT, check=False,
        )
        stderr = proc.stderr.decode(errors="replace")
        status = tuple(
            (parts[0], tuple(parts[1:]))
            for line in stderr.splitlines() if line.startswith("[GNUPG:] ")
            for parts in [line[len("[GNUPG:] "):].split()] if parts
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed: {stderr}")
        return GpgOutcome(proc.returncode, proc.stdout, stderr, status)

    # --- keys ---------------------------------------------------------------------------------

    def generate(self, uid: str, kind: KeyKind = "rsa3072", *, expires: str = "never",
                 at: str | None = None) -> str:
        """A new key pair (primary for signing, subkey for encryption); its fingerprint.

        ``kind`` "cv25519" means an Ed25519 primary with a Cv25519 encryption subkey.
        ``expires`` is gpg's syntax ("never", "1y", "2d"); ``at`` is a faked creation time
        such as "20200101T000000".
        """
        primary, sub = ("ed25519", "cv25519") if kind == "cv25519" else (kind, kind)
        faked = ("--faked-system-time", at) if at else ()
        made = self.run(*faked, *_NO_PASSPHRASE, "--quick-generate-key", uid, primary,
                        "sign,cert", expires)
        created = made.args("KEY_CREATED")  # KEY_CREATED P <fingerprint>
        assert created is not None and len(created) > 1, made.stderr
        fpr = created[1]
        self.run(*faked, *_NO_PASSPHRASE, "--quick-add-key", fpr, sub, "encr", expires)
        return fpr

    def export_public(self, *fprs: str) -> bytes:
        return self.run("--armor", "--export", *fprs).stdout

    def export_secret(self, *fprs: str) -> bytes:
        return self.run(*_NO_PASSPHRASE, "--armor", "--export-secret-keys", *fprs).stdout

    def import_keys(self, data: bytes) -> None:
        self.run(*_NO_PASSPHRASE, "--import", data=data)

    def revoke(self, fpr: str) -> None:
        """Revoke a key with the revocation certificate gpg made at generation."""
        rev = (self.home / "openpgp-revocs.d" / f"{fpr}.rev").read_bytes()
        # gpg writes it with a ":" before the armor so it is not imported by accident.
        self.import_keys(rev.replace(b":-----BEGIN", b"-----BEGIN"))

    # --- produce ------------------------------------------------------------------------------

    def encrypt(self, data: bytes, recipients: Sequence[str], *, signer: str | None = None,
                armor: bool = True, extra: Iterable[str] = ()) -> bytes:
        """``gpg --encrypt [--sign]`` as a partner's client runs it (compressed by default)."""
        args = ["--encrypt", *(a for r in recipients for a in ("-r", r))]
        if signer:
            args += ["--sign", "-u", signer]
        if armor:
            args.append("--armor")
        return self.run(*_NO_PASSPHRASE, *extra, *args, data=data).stdout

    def sign(self, data: bytes, signer: str, mode: SignMode = "detached", *,
             armor: bool = True, extra: Iterable[str] = ()) -> bytes:
        flag = {"detached": "--detach-sign", "clear": "--clearsign", "inline": "--sign"}[mode]
        args = [flag, "-u", signer, *(["--armor"] if armor and mode != "clear" else [])]
        return self.run(*_NO_PASSPHRASE, *extra, *args, data=data).stdout

    # --- consume ------------------------------------------------------------------------------

    def decrypt(self, data: bytes) -> GpgOutcome:
        """``gpg --decrypt``: stdout is the plaintext (or signed content), never checked here."""
        return self.run(*_NO_PASSPHRASE, "--decrypt", data=data, check=False)

    def verify_detached(self, data: bytes, signature: bytes) -> GpgOutcome:
        with tempfile.NamedTemporaryFile(dir=self.home, suffix=".sig") as sig:
            sig.write(signature)
            sig.flush()
            return self.run("--verify", sig.name, "-", data=data, check=False)

    # --- mail as a partner's client builds it -------------------------------------------------

    def pgp_mime_encrypted(self, entity: bytes, recipients: Sequence[str], *,
                           signer: str | None = None) -> bytes:
        """A complete RFC 3156 multipart/encrypted message around gpg's armored output."""
        armored = self.encrypt(_crlf(entity), recipients, signer=signer)
        boundary = "enc-" + secrets.token_hex(8)
        body = (
            "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            f"--{boundary}\r\n"
            "Content-Type: application/pgp-encrypted\r\n"
            "Content-Description: PGP/MIME version identification\r\n\r\n"
            "Version: 1\r\n\r\n"
            f"--{boundary}\r\n"
            'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
            "Content-Description: OpenPGP encrypted message\r\n"
            'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
        ).encode() + _crlf(armored) + f"\r\n--{boundary}--\r\n".encode()
        content_type = ('multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
                        f' boundary="{boundary}"')
        return mail_message(content_type, body)

    def pgp_mime_signed(self, entity: bytes, signer: str) -> bytes:
        """A complete RFC 3156 multipart/signed message; the signed part is ``entity``."""
        signed = _crlf(entity)
        signature = self.sign(signed, signer, "detached", extra=["--digest-algo", "SHA256"])
        boundary = "sig-" + secrets.token_hex(8)
        body = (
            f"This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n--{boundary}\r\n"
        ).encode() + signed + (
            f"\r\n--{boundary}\r\n"
            'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
            "Content-Description: OpenPGP digital signature\r\n\r\n"
        ).encode() + _crlf(signature) + f"\r\n--{boundary}--\r\n".encode()
        content_type = ('multipart/signed; micalg=pgp-sha256;\r\n'
                        f' protocol="application/pgp-signature"; boundary="{boundary}"')
        return mail_message(content_type, body)

    def inline_encrypted(self, text: bytes, recipients: Sequence[str], *,
                         signer: str | None = None) -> bytes:
        """A text/plain message whose body is an armored, encrypted (and signed) block."""
        armored = self.encrypt(text, recipients, signer=signer)
        return mail_message("text/plain; charset=utf-8", _crlf(armored))

    def inline_clearsigned(self, text: bytes, signer: str) -> bytes:
        return mail_message("text/plain; charset=utf-8", _crlf(self.sign(text, signer, "clear")))


def mail_message(content_type: str, body: bytes, *, subject: str = "Hilfeplan",
                 sender: str = "asd@partner.example", to: str = "jugendamt@xgate.example") -> bytes:
    """A whole message (top-level headers, CRLF) with the given Content-Type and body."""
    headers = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: {make_msgid(domain='partner.example')}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    )
    return headers.encode() + body


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
