"""OpenPGP decryption and signature verification over a GnuPG home owned by the gateway.

gpg streams plaintext to stdout *before* it has checked the integrity code at the end of the
message, so its output is only trusted when the status lines prove the whole operation
succeeded: DECRYPTION_OKAY and END_DECRYPTION, no DECRYPTION_FAILED / BADMDC, exit code 0,
and proof of integrity protection (GOODMDC or an AEAD packet). Anything else discards the
output and raises one uniform ``PgpError("decryption failed")``, so callers cannot build an
oracle out of distinct failure reasons and never see partial plaintext.

Messages without integrity protection (Symmetrically Encrypted Data packets, no MDC) are the
EFAIL vector; they are refused with a distinct, explicit error because an operator must be
able to tell "partner uses an ancient client" from "message corrupted".

A bad signature is *not* an error here: the result says "signed, not valid" and the pipeline's
policy decides what to do with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gnupg

from crypto.errors import CryptoError

# Options added to every gpg invocation.
#  --no-options: an admin-edited gpg.conf in the home (e.g. "ignore-mdc-error") must not be able
#    to weaken the checks below.
#  --no-auto-key-retrieve / --auto-key-locate local: verifying a signature from an unknown key
#    must not make the gateway contact keyservers or WKD (a tracking beacon and a network
#    dependency).
#  --pinentry-mode loopback: never try to pop up a pinentry on a server; without a passphrase
#    a protected key simply fails.
# GnuPG 2.2 has no --no-allow-old-cipher-algos (that is 2.3+); 2.2.x already fails closed on
# missing MDC ("decryption forced to fail!") unless --ignore-mdc-error is given, which we never
# pass and which --no-options keeps out of gpg.conf.
_GPG_OPTIONS = [
    "--no-options",
    "--no-auto-key-retrieve",
    "--auto-key-locate",
    "local",
    "--pinentry-mode",
    "loopback",
]

_STATUS_PREFIX = "[GNUPG:] "
_NO_MDC_WARNING = "message was not integrity protected"
_MAX_OUTPUT_EXCEEDED = "exceeded --max-output limit"
# Bound on decrypted content: above the SMTP edge's default message size limit (50 MiB).
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
# Signature status keywords that mean "a signature was present but did not verify".
_BAD_SIG_KEYWORDS = frozenset({"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"})


class PgpError(CryptoError):
    """An OpenPGP message could not be decrypted, or was refused (e.g. no integrity protection)."""


@dataclass(frozen=True)
class StatusLine:
    keyword: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class PgpResult:
    """Outcome of a successful decryption.

    ``signature_valid`` is purely cryptographic validity (GOODSIG + VALIDSIG); whether the
    signer is *trusted* for a given sender is the pipeline's decision, using
    ``signer_fingerprint`` (the primary key's fingerprint, as returned by ``import_keys``).
    """

    plaintext: bytes
    signed: bool
    signature_valid: bool
    signer_fingerprint: str | None  # primary key fingerprint; None unless the signature verified
    signing_key_fingerprint: str | None  # the (sub)key that made the signature
    signer_key_id: str | None  # known even for bad signatures / unknown signers
    signature_status: str | None  # GOODSIG, BADSIG, ERRSIG, ... (the decisive keyword)
    cipher_algo: int | None  # OpenPGP symmetric algorithm id from DECRYPTION_INFO
    mdc_method: int | None
    aead_algo: int | None
    status_lines: tuple[StatusLine, ...] = field(repr=False, default=())


def parse_status(stderr: str) -> list[StatusLine]:
    """Extract gpg's machine-readable ``[GNUPG:]`` lines; human-readable noise is ignored."""
    lines: list[StatusLine] = []
    for raw in stderr.splitlines():
        if not raw.startswith(_STATUS_PREFIX):
            continue
        parts = raw[len(_STATUS_PREFIX) :].split()
        if parts:
            lines.append(StatusLine(parts[0], tuple(parts[1:])))
    return lines


def _int_or_none(args: tuple[str, ...], index: int) -> int | None:
    try:
        return int(args[index])
    except (IndexError, ValueError):
        return None


class OpenPgpKeyring:
    """A GnuPG home the gateway owns, and the decrypt/verify operation on it."""

    def __init__(self, home: Path, *, gpg_binary: str = "gpg",
                 max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        # A few KB of compressed ciphertext can inflate to gigabytes (a decompression
        # bomb); gpg stops writing at this many bytes and the message is refused.
        self.max_output = max_output
        self.home = home
        # gpg itself warns about (and agent sockets may be refused in) group/world-accessible
        # homes; create it 0700 and tighten an existing one we were pointed at.
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        try:
            self._gpg = gnupg.GPG(
                gpgbinary=gpg_binary, gnupghome=str(home), options=list(_GPG_OPTIONS)
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise PgpError(f"cannot run gpg: {exc}") from None

    def import_keys(self, armored: bytes) -> list[str]:
        """Import (public) keys; return the fingerprints gpg reports, without duplicates."""
        try:
            result = self._gpg.import_keys(armored)
        except (OSError, ValueError):
            raise PgpError("no keys imported") from None
        fingerprints: list[str] = []
        for fpr in result.fingerprints:
            if fpr and fpr not in fingerprints:
                fingerprints.append(str(fpr))
        if not fingerprints:
            raise PgpError("no keys imported")
        return fingerprints

    def decrypt(self, data: bytes, passphrase: str | None = None) -> PgpResult:
        """Decrypt (and verify, if signed) one OpenPGP message.

        Raises ``PgpError("no integrity protection (MDC); refused")`` for messages without MDC
        and ``PgpError("decryption failed")`` for every other failure.
        """
        run = self._run(data, passphrase, [])
        if run.complete:
            return run.to_result(run)
        # GnuPG 2.2 aborts on a BADSIG *before* it checks the MDC (no DECRYPTION_OKAY, status
        # "FAILURE gpg-exit"), so the first pass cannot prove the ciphertext is intact. A second
        # pass with --skip-verify proves integrity and yields the plaintext; the signature
        # verdict comes from the first pass. Only reached for messages with a signature problem.
        if run.sig_problem and "DECRYPTION_FAILED" not in run.keywords:
            second = self._run(data, passphrase, ["--skip-verify"])
            if second.complete and not second.sig_problem:
                return second.to_result(run)
        raise PgpError("decryption failed")

    def _run(self, data: bytes, passphrase: str | None, extra_args: list[str]) -> _Run:
        try:
            result = self._gpg.decrypt(
                data, passphrase=passphrase,
                extra_args=["--max-output", str(self.max_output), *extra_args])
        except (OSError, ValueError):
            # python-gnupg raises ValueError for passphrases containing newlines.
            raise PgpError("decryption failed") from None
        run = _Run(
            stderr=result.stderr or "",
            returncode=result.returncode,
            ok=bool(result.ok),
            # Kept private to _Run and only exposed via to_result() once `complete` holds.
            output=bytes(result.data or b""),
        )
        # gpg still reports DECRYPTION_OKAY and END_DECRYPTION when it stopped at the limit;
        # only its exit status and this line tell. Named here so the operator knows why.
        if _MAX_OUTPUT_EXCEEDED in run.stderr:
            raise PgpError(f"decrypted content exceeds {self.max_output} bytes; refused")
        # Checked before the generic failure: gpg 2.2 already fails such messages, but the
        # operator needs to know *why*, and an older gpg would have returned the plaintext.
        if run.unprotected:
            raise PgpError("no integrity protection (MDC); refused")
        return run


class _Run:
    """One gpg --decrypt invocation and the facts its status lines establish."""

    def __init__(self, stderr: str, returncode: int | None, ok: bool, output: bytes) -> None:
        self.stderr = stderr
        self.status = parse_status(stderr)
        self.keywords = {line.keyword for line in self.status}
        self._output = output
        info = next((line for line in self.status if line.keyword == "DECRYPTION_INFO"), None)
        self.has_info = info is not None
        self.mdc_method = _int_or_none(info.args, 0) if info else None
        self.cipher_algo = _int_or_none(info.args, 1) if info else None
        self.aead_algo = _int_or_none(info.args, 2) if info else None
        self.sig_problem = bool(self.keywords & _BAD_SIG_KEYWORDS)
        # gpg exits 2 (signer key unknown) even when decryption itself succeeded. A non-zero
        # exit is tolerated only when a signature problem explains it and gpg reported no
        # other error; the signature outcome is then reported, not raised.
        exit_ok = returncode == 0 or (self.sig_problem and not self.keywords & {"ERROR", "FAILURE"})
        self.complete = (
            exit_ok
            and ok
            and "DECRYPTION_OKAY" in self.keywords
            and "END_DECRYPTION" in self.keywords
            and "DECRYPTION_FAILED" not in self.keywords
            and "BADMDC" not in self.keywords
            # Positive proof of integrity, not just absence of a complaint.
            and ("GOODMDC" in self.keywords or bool(self.aead_algo))
        )

    @property
    def unprotected(self) -> bool:
        no_mdc = self.has_info and self.mdc_method == 0 and not self.aead_algo
        return no_mdc or _NO_MDC_WARNING in self.stderr

    def to_result(self, signature_run: _Run) -> PgpResult:
        # Never hand out output of a run that did not fully succeed: gpg writes plaintext
        # before it notices tampering.
        if not self.complete:
            raise PgpError("decryption failed")
        sig = _signature_facts(signature_run.status)
        return PgpResult(
            plaintext=self._output,
            cipher_algo=self.cipher_algo,
            mdc_method=self.mdc_method,
            aead_algo=self.aead_algo,
            status_lines=tuple(signature_run.status),
            signed=sig.signed,
            signature_valid=sig.valid,
            signer_fingerprint=sig.primary_fpr,
            signing_key_fingerprint=sig.signing_fpr,
            signer_key_id=sig.key_id,
            signature_status=sig.status,
        )


@dataclass(frozen=True)
class _SigFacts:
    signed: bool = False
    valid: bool = False
    primary_fpr: str | None = None
    signing_fpr: str | None = None
    key_id: str | None = None
    status: str | None = None


def _signature_facts(status: list[StatusLine]) -> _SigFacts:
    """Summarise the signature status lines.

    Only a message with exactly one signature that gpg reports as both GOODSIG and VALIDSIG,
    and no bad/erroneous signature alongside it, counts as valid: a good signature next to a
    bad one must not launder the bad one.
    """
    sig_keywords = _BAD_SIG_KEYWORDS | {"GOODSIG"}
    sigs = [line for line in status if line.keyword in sig_keywords]
    validsigs = [line for line in status if line.keyword == "VALIDSIG"]
    if not sigs:
        return _SigFacts()
    decisive = next((s for s in sigs if s.keyword != "GOODSIG"), sigs[0])
    key_id = decisive.args[0] if decisive.args else None
    valid = len(sigs) == 1 and decisive.keyword == "GOODSIG" and len(validsigs) == 1
    signing_fpr: str | None = None
    primary_fpr: str | None = None
    if valid:
        # VALIDSIG <sig-fpr> <date> <ts> <expire> <version> <reserved> <pk-algo> <hash-algo>
        #          <sig-class> [<primary-key-fpr>]
        args = validsigs[0].args
        signing_fpr = args[0] if args else None
        primary_fpr = args[9] if len(args) > 9 else signing_fpr
    return _SigFacts(True, valid, primary_fpr, signing_fpr, key_id, decisive.keyword)
