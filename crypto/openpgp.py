"""The GnuPG home owned by the gateway, and gpg's decryption with its status-line safety rules.

gpg streams plaintext to stdout *before* it has checked the integrity code at the end of the
message, so its output is only trusted when the status lines prove the whole operation
succeeded: DECRYPTION_OKAY and END_DECRYPTION, no DECRYPTION_FAILED / BADMDC, exit code 0,
and proof of integrity protection (GOODMDC or an AEAD packet). Anything else discards the
output and raises one uniform ``PgpError("decryption failed")``, so callers cannot build an
oracle out of distinct failure reasons and never see partial plaintext.

Messages without integrity protection (Symmetrically Encrypted Data packets, no MDC) are the
EFAIL vector; they are refused with a distinct, explicit error (``PgpNoIntegrity``) because an
operator must be able to tell "partner uses an ancient client" from "message corrupted".

A bad signature is *not* an error here: the result says "signed, not valid" and the pipeline's
policy decides what to do with it. ``crypto.pgp_gnupg`` builds the ``PgpBackend`` on this.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import gnupg

from crypto.pgp_backend import (
    DECRYPTION_FAILED,
    NO_INTEGRITY,
    REASON_BAD_SIGNATURE,
    REASON_KEY_EXPIRED,
    REASON_KEY_REVOKED,
    REASON_SEVERAL_SIGNATURES,
    REASON_SIGNATURE_EXPIRED,
    PgpNoIntegrity,
    PgpTooLarge,
    cipher_name,
    reason_unknown_signer,
)
from crypto.pgp_backend import DEFAULT_MAX_OUTPUT as DEFAULT_MAX_OUTPUT
from crypto.pgp_backend import PgpError as PgpError
from crypto.pgp_backend import PgpResult as PgpResult
from crypto.pgp_backend import StatusLine as StatusLine

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
MAX_OUTPUT_EXCEEDED = "exceeded --max-output limit"
# Signature status keywords that mean "a signature was present but did not verify".
_BAD_SIG_KEYWORDS = frozenset({"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"})
_SIG_REASONS = {
    "BADSIG": REASON_BAD_SIGNATURE,
    "EXPSIG": REASON_SIGNATURE_EXPIRED,
    "EXPKEYSIG": REASON_KEY_EXPIRED,
    "REVKEYSIG": REASON_KEY_REVOKED,
}
# ERRSIG's return code for "public key not available" (GPG_ERR_NO_PUBKEY).
_ERRSIG_NO_PUBKEY = "9"

# python-gnupg logs the first bytes of imported keys, scanned keys and verified data at DEBUG
# level: secret key material and plaintext must never reach a log, whatever the log level.
_LEAKY_DEBUG_MESSAGES = (
    "import_keys: ", "scan_keys: ", "verify_data: ", "Wrote to temp file", "chunk: ",
)


class _DropDataLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_LEAKY_DEBUG_MESSAGES)


def quiet_gnupg_logger() -> None:
    """Keep python-gnupg's data-bearing debug records out of the logs (idempotent)."""
    logger = logging.getLogger("gnupg")
    if not any(isinstance(f, _DropDataLogs) for f in logger.filters):
        logger.addFilter(_DropDataLogs())


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


@dataclass(frozen=True)
class ImportedKey:
    fingerprint: str  # primary key fingerprint, upper-case hex
    has_secret: bool


class OpenPgpKeyring:
    """A GnuPG home the gateway owns, and the decrypt operation on it."""

    def __init__(self, home: Path, *, gpg_binary: str = "gpg",
                 max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        # A few KB of compressed ciphertext can inflate to gigabytes (a decompression
        # bomb); gpg stops writing at this many bytes and the message is refused.
        self.max_output = max_output
        self.home = home
        quiet_gnupg_logger()
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

    @property
    def gpg(self) -> gnupg.GPG:
        """The python-gnupg handle on this home, with the gateway's safe options."""
        return self._gpg

    def import_keys(self, armored: bytes) -> list[str]:
        """Import keys; return the primary fingerprints gpg reports, without duplicates."""
        return [key.fingerprint for key in self.import_keys_detailed(armored)]

    def import_keys_detailed(self, data: bytes) -> list[ImportedKey]:
        """Import keys (armored or binary, public or secret); say which carried a secret part.

        gpg merges into what it already has, so importing the same key again is harmless.
        """
        try:
            result = self._gpg.import_keys(data)
        except (OSError, ValueError):
            raise PgpError("no keys imported") from None
        secret: dict[str, bool] = {}
        for entry in result.results:
            fpr = str(entry.get("fingerprint") or "")
            if not fpr or not all(c in "0123456789ABCDEF" for c in fpr):
                continue
            # IMPORT_OK's flag 16 means "contains private key".
            flags = _int_or_none((str(entry.get("ok") or ""),), 0) or 0
            secret[fpr] = secret.get(fpr, False) or bool(flags & 16)
        if not secret:
            raise PgpError("no keys imported")
        return [ImportedKey(fpr, has) for fpr, has in secret.items()]

    def decrypt(self, data: bytes, passphrase: str | None = None) -> PgpResult:
        """Decrypt (and verify, if signed) one OpenPGP message.

        Raises ``PgpNoIntegrity`` for messages without MDC, ``PgpTooLarge`` above
        ``max_output`` and ``PgpError("decryption failed")`` for every other failure.
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
        raise PgpError(DECRYPTION_FAILED)

    def _run(self, data: bytes, passphrase: str | None, extra_args: list[str]) -> _Run:
        try:
            result = self._gpg.decrypt(
                data, passphrase=passphrase,
                extra_args=["--max-output", str(self.max_output), *extra_args])
        except (OSError, ValueError):
            # python-gnupg raises ValueError for passphrases containing newlines.
            raise PgpError(DECRYPTION_FAILED) from None
        run = _Run(
            stderr=result.stderr or "",
            returncode=result.returncode,
            ok=bool(result.ok),
            # Kept private to _Run and only exposed via to_result() once `complete` holds.
            output=bytes(result.data or b""),
        )
        # gpg still reports DECRYPTION_OKAY and END_DECRYPTION when it stopped at the limit;
        # only its exit status and this line tell. Named here so the operator knows why.
        if MAX_OUTPUT_EXCEEDED in run.stderr:
            raise PgpTooLarge(f"decrypted content exceeds {self.max_output} bytes; refused")
        # Checked before the generic failure: gpg 2.2 already fails such messages, but the
        # operator needs to know *why*, and an older gpg would have returned the plaintext.
        if run.unprotected:
            raise PgpNoIntegrity(NO_INTEGRITY)
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
        # DECRYPTION_KEY <subkey-fpr> <primary-fpr> <otrust> (GnuPG >= 2.2.?; absent -> None)
        key = next((line for line in self.status if line.keyword == "DECRYPTION_KEY"), None)
        self.recipient_fpr = key.args[1] if key and len(key.args) > 1 else None
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
            raise PgpError(DECRYPTION_FAILED)
        sig = signature_facts(signature_run.status)
        return PgpResult(
            plaintext=self._output,
            cipher_algo=self.cipher_algo,
            cipher=cipher_name(self.cipher_algo),
            mdc_method=self.mdc_method,
            aead_algo=self.aead_algo,
            recipient_fingerprint=self.recipient_fpr,
            status_lines=tuple(signature_run.status),
            signed=sig.signed,
            signature_valid=sig.valid,
            signer_fingerprint=sig.primary_fpr,
            signing_key_fingerprint=sig.signing_fpr,
            signer_key_id=sig.key_id,
            signature_status=sig.status,
            signature_reason=sig.reason,
            engine="gnupg",
        )


@dataclass(frozen=True)
class SigFacts:
    signed: bool = False
    valid: bool = False
    primary_fpr: str | None = None
    signing_fpr: str | None = None
    key_id: str | None = None
    status: str | None = None
    reason: str | None = None


def signature_facts(status: list[StatusLine]) -> SigFacts:
    """Summarise the signature status lines.

    Only a message with exactly one signature that gpg reports as both GOODSIG and VALIDSIG,
    and no bad/erroneous signature alongside it, counts as valid: a good signature next to a
    bad one must not launder the bad one.
    """
    sig_keywords = _BAD_SIG_KEYWORDS | {"GOODSIG"}
    sigs = [line for line in status if line.keyword in sig_keywords]
    validsigs = [line for line in status if line.keyword == "VALIDSIG"]
    if not sigs:
        return SigFacts()
    decisive = next((s for s in sigs if s.keyword != "GOODSIG"), sigs[0])
    key_id = decisive.args[0] if decisive.args else None
    valid = len(sigs) == 1 and decisive.keyword == "GOODSIG" and len(validsigs) == 1
    signing_fpr: str | None = None
    primary_fpr: str | None = None
    reason: str | None = None
    if valid:
        # VALIDSIG <sig-fpr> <date> <ts> <expire> <version> <reserved> <pk-algo> <hash-algo>
        #          <sig-class> [<primary-key-fpr>]
        args = validsigs[0].args
        signing_fpr = args[0] if args else None
        primary_fpr = args[9] if len(args) > 9 else signing_fpr
    elif decisive.keyword == "ERRSIG":
        # ERRSIG <keyid> <pkalgo> <hashalgo> <sig_class> <time> <rc> [<fpr>]
        rc = decisive.args[5] if len(decisive.args) > 5 else ""
        reason = (reason_unknown_signer(key_id) if rc == _ERRSIG_NO_PUBKEY
                  else f"signature could not be checked (gpg error {rc or '?'})")
    elif decisive.keyword == "GOODSIG":
        reason = REASON_SEVERAL_SIGNATURES
    else:
        reason = _SIG_REASONS.get(decisive.keyword, REASON_BAD_SIGNATURE)
    return SigFacts(True, valid, primary_fpr, signing_fpr, key_id, decisive.keyword, reason)
