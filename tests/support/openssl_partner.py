"""The real ``openssl`` command as the partner agency's S/MIME client.

Messages are made at test time: an entity is signed and/or encrypted by openssl, then put
under ordinary mail headers with CRLF line endings, as the SMTP edge stores them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.smime_pki import Party

TIMEOUT = 60


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class OpensslPartner:
    workdir: Path

    def run(self, *args: str, data: bytes) -> bytes:
        tag = os.urandom(6).hex()
        source, out = self.workdir / f"in-{tag}", self.workdir / f"out-{tag}"
        source.write_bytes(data)
        # I/O options first: openssl stops parsing options at the first positional argument.
        proc = subprocess.run(["openssl", args[0], "-in", str(source), "-out", str(out),
                               *args[1:]], capture_output=True, timeout=TIMEOUT, check=False)
        source.unlink()
        if proc.returncode != 0:
            raise AssertionError(f"openssl {args}: {proc.stderr.decode(errors='replace')}")
        result = out.read_bytes()
        out.unlink()
        return result

    def encrypt(self, entity: bytes, *recipients: Party, cipher: str = "-aes-256-cbc",
                command: str = "cms", keyopt: tuple[str, ...] = ()) -> bytes:
        """An application/pkcs7-mime entity (headers and base64 body)."""
        extra: list[str] = []
        for party in recipients:
            extra += ["-recip", str(party.cert_pem), *keyopt] if keyopt else []
        certs = [] if keyopt else [str(p.cert_pem) for p in recipients]
        return self.run(command, "-encrypt", "-binary", cipher, "-outform", "SMIME", *extra,
                        *certs, data=entity)

    def sign(self, entity: bytes, signer: Party, ca: Party, *, opaque: bool,
             command: str = "cms") -> bytes:
        """multipart/signed (detached) or application/pkcs7-mime signed-data (opaque)."""
        mode = ["-nodetach"] if opaque else []
        return self.run(command, "-sign", "-outform", "SMIME", "-md", "sha256", *mode,
                        "-signer", str(signer.cert_pem), "-inkey", str(signer.key_pem),
                        "-certfile", str(ca.cert_pem), data=entity)

    def decrypt(self, message: bytes, recipient: Party) -> bytes:
        return self.run("cms", "-decrypt", "-inform", "SMIME", "-recip",
                        str(recipient.cert_pem), "-inkey", str(recipient.key_pem),
                        data=message)

    def verify(self, message: bytes, ca: Party) -> bytes:
        """The signed content; raises AssertionError if openssl does not verify it."""
        return self.run("cms", "-verify", "-inform", "SMIME", "-CAfile", str(ca.cert_pem),
                        data=message)


def mail(entity: bytes, *, sender: str, to: str, subject: str = "Hilfeplan",
         extra_headers: bytes = b"") -> bytes:
    """A whole message: mail headers over ``entity`` (which brings its own Content-*)."""
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 23 Nov 2026 08:00:00 +0100\r\n"
            f"Message-ID: <{os.urandom(6).hex()}@test>\r\n").encode()
    return head + extra_headers + crlf(entity)
