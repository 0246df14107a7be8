"""OpenPGP Web Key Directory client (draft-koch-openpgp-webkey-service).

A partner publishes its key at a URL derived from the mail address; fetching it over HTTPS
with a verified certificate means "the operator of that domain says this is the key".

Lookup order (draft section 3.1, where the direct method is for domains without the
openpgpkey sub-domain):

* The advanced method (``https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/...``)
  is tried first.
* The direct method (``https://<domain>/.well-known/openpgpkey/hu/...``) is tried only when the
  advanced method says "nothing here": its host does not exist in DNS (NXDOMAIN/NODATA, not a
  DNS outage), refuses the connection, or answers 404/410. Any other failure of the advanced
  method (TLS verification, timeout, a 5xx, an oversize or non-key answer) ends the lookup
  with that error: silently trying another host after a failed certificate check would hide
  exactly the failure an operator must see. (A domain with wildcard DNS and a web server
  whose certificate does not name openpgpkey.<domain> therefore gets a TLS error, not a
  direct-method lookup; the draft asks such domains to exempt the sub-domain.)
* The outcome is ``WkdKeyNotFound`` when each method answered 404/410 or its host does not
  exist. A direct-method host that refuses the connection is a plain ``WkdError``: a web
  server being down is not proof that no key is published.
* Host absence and refusal count only for the first request of a method; a redirect target
  that cannot be reached is an error.
* Redirects: at most ``MAX_REDIRECTS`` per method, HTTPS targets only (any host: the redirect
  itself came from the domain's verified server). A redirect to ``http:`` is an error.
* ``timeout`` is one deadline for the whole lookup (both methods, redirects, a body that
  trickles in), not a per-read timeout. DNS resolution of real host names is done by
  getaddrinfo, which cannot be interrupted; it is outside that bound.
* Environment proxies are not used (http.client ignores them).

What comes back is the raw binary key (``WkdResult.data``), checked only to *look* like a
binary OpenPGP public key (first packet is a Public-Key packet). The caller must import it and
check that one of the key's user ids carries ``address`` before using it: the directory of a
domain can publish anything, including a key for someone else.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from crypto.errors import CryptoError

# z-base-32 (Zooko O'Whielacronx, 2002): the alphabet the draft prescribes for the hash.
_ZBASE32_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
DEFAULT_MAX_BYTES = 256 * 1024
# Enough for "apex -> www" plus one more hop; a loop or a long chain is a misconfiguration.
MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# 410 Gone is how some servers say a key was withdrawn: equally "no key here".
_NOT_FOUND_STATUSES = frozenset({404, 410})
# The draft maps only ASCII upper case to lower case; str.lower() would also fold "Ä" to "ä"
# and so hash a different local part than the publisher did.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HOST_LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")
_READ_CHUNK = 64 * 1024
_PUBLIC_KEY_TAG = 6


class WkdError(CryptoError):
    """A WKD lookup failed; the message is one line naming the address and what failed."""


class WkdKeyNotFound(WkdError):
    """The domain answered, and has no key for the address (404/410 at every method tried).

    A definite "no", unlike the transient failures (timeout, TLS, 5xx) of plain WkdError.
    """


@dataclass(frozen=True)
class WkdResult:
    url: str  # where the key was finally served from (after redirects)
    data: bytes  # binary OpenPGP key material, as served


def zbase32(data: bytes) -> str:
    """z-base-32 encoding, most significant bit first, no padding characters."""
    if not data:
        return ""
    nbits = len(data) * 8
    pad = -nbits % 5  # the last group is filled up with zero bits
    value = int.from_bytes(data, "big") << pad
    count = (nbits + pad) // 5
    return "".join(_ZBASE32_ALPHABET[(value >> (5 * (count - 1 - i))) & 31]
                   for i in range(count))


def wkd_hash(local_part: str) -> str:
    """The 32-character z-base-32 SHA-1 of the local part, ASCII letters lowered."""
    mapped = local_part.translate(_ASCII_LOWER)
    # SHA-1 is the draft's fixed name-mapping function, not a security measure here.
    return zbase32(hashlib.sha1(mapped.encode("utf-8"), usedforsecurity=False).digest())


def _split_address(address: str) -> tuple[str, str]:
    """Local part (as given) and the lower-cased, validated ASCII domain."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise WkdError(f"WKD lookup for {address!r}: not a mail address")
    if any(ch.isspace() or not ch.isprintable() for ch in address):
        raise WkdError(f"WKD lookup for {address!r}: address contains blanks or control "
                       "characters")
    domain = domain.translate(_ASCII_LOWER).removesuffix(".")
    if not domain.isascii():
        # Python's built-in "idna" codec is IDNA 2003 and maps "ß" to "ss", i.e. to another
        # domain; fetching a key from a different domain is worse than not fetching one.
        raise WkdError(f"WKD lookup for {address}: non-ASCII domain; use its xn-- (A-label) "
                       "form")
    labels = domain.split(".")
    if len(domain) > 253 or not all(
        0 < len(label) <= 63 and set(label) <= _HOST_LABEL_CHARS
        and not label.startswith("-") and not label.endswith("-")
        for label in labels
    ):
        raise WkdError(f"WKD lookup for {address}: {domain!r} is not a valid domain name")
    if labels[-1].isdigit():
        # An IP literal has no openpgpkey sub-domain and no certificate for a name.
        raise WkdError(f"WKD lookup for {address}: domain is an IP address")
    return local, domain


def wkd_urls(address: str) -> tuple[str, str]:
    """(advanced method URL, direct method URL) for ``address``.

    The ``l`` parameter carries the local part unchanged (case preserved, percent-encoded),
    so that a server may serve keys for local parts that differ only in case.
    """
    local, domain = _split_address(address)
    tail = f"hu/{wkd_hash(local)}?l={quote(local, safe='')}"
    return (f"https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/{tail}",
            f"https://{domain}/.well-known/openpgpkey/{tail}")


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("lookup deadline passed")
        return left


class _OverrideHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS for ``host`` (SNI, certificate name, Host header) over a TCP connection to
    ``connect_to``, which is the host itself or its ``resolve`` override."""

    def __init__(self, host: str, port: int, *, connect_to: tuple[str, int],
                 context: ssl.SSLContext, deadline: _Deadline) -> None:
        super().__init__(host, port, context=context)
        self._connect_to = connect_to
        self._tls_context = context
        self._deadline = deadline

    def connect(self) -> None:
        raw = socket.create_connection(self._connect_to, self._deadline.remaining())
        try:
            # Re-armed: the TCP connect may have used up part of the time.
            raw.settimeout(self._deadline.remaining())
            # check_hostname on the context makes the handshake verify the certificate
            # against server_hostname, i.e. the URL's host, never the override address.
            self.sock = self._tls_context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


@dataclass(frozen=True)
class _Response:
    status: int
    location: str | None
    content_type: str
    body: bytes  # read only for 200


class _NoKeyHere(Exception):
    """This method has nothing for the address; the lookup may go on to the next one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Fetcher:
    def __init__(self, address: str, *, context: ssl.SSLContext, deadline: _Deadline,
                 resolve: Mapping[str, str], max_bytes: int) -> None:
        self.address = address
        self.context = context
        self.deadline = deadline
        self.resolve = {host.lower().removesuffix("."): target
                        for host, target in resolve.items()}
        self.max_bytes = max_bytes

    def error(self, what: str) -> WkdError:
        return WkdError(f"WKD lookup for {self.address}: {what}")

    def fetch(self, url: str, *, refused_is_absent: bool) -> WkdResult:
        """One method: follow redirects; return the key, or raise _NoKeyHere or WkdError.

        Only the first hop's host may be absent (or, with ``refused_is_absent``, refuse):
        a redirect target that is unreachable is a broken publication, not an absent one.
        """
        for hop in range(MAX_REDIRECTS + 1):
            response = self._get(url, first_hop=hop == 0, refused_is_absent=refused_is_absent)
            if response.status == 200:
                self._check_key(url, response)
                return WkdResult(url=url, data=response.body)
            if response.status in _NOT_FOUND_STATUSES:
                raise _NoKeyHere(f"HTTP {response.status} from {_host(url)}")
            if response.status not in _REDIRECT_STATUSES:
                raise self.error(f"HTTP {response.status} from {_host(url)}")
            if not response.location:
                raise self.error(f"HTTP {response.status} without Location from {_host(url)}")
            target = urljoin(url, response.location)
            if urlsplit(target).scheme != "https":
                raise self.error(f"{_host(url)} redirected to a non-HTTPS URL; refused")
            url = target
        raise self.error(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    def _get(self, url: str, *, first_hop: bool, refused_is_absent: bool) -> _Response:
        parts = urlsplit(url)
        try:
            port = parts.port or 443
        except ValueError:
            raise self.error(f"invalid port in {url}") from None
        host = (parts.hostname or "").removesuffix(".")
        if not host:
            raise self.error(f"no host in {url}")
        connect_to = self._connect_target(host, port)
        where = host if connect_to == (host, port) else \
            f"{host} (via {connect_to[0]}:{connect_to[1]})"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = _OverrideHTTPSConnection(host, port, connect_to=connect_to,
                                        context=self.context, deadline=self.deadline)
        try:
            conn.connect()
            return self._exchange(conn, target)
        except ssl.SSLCertVerificationError as exc:
            raise self.error(f"TLS verification failed for {host}: "
                             f"{exc.verify_message or exc.reason}") from exc
        except ssl.SSLError as exc:
            raise self.error(f"TLS handshake with {where} failed: {exc.reason or exc}"
                             ) from exc
        except TimeoutError as exc:
            raise self.error(f"timed out after {self.deadline.seconds:g} s talking to "
                             f"{where}") from exc
        except ConnectionRefusedError as exc:
            if first_hop and refused_is_absent:
                raise _NoKeyHere(f"connection to {where} refused") from exc
            raise self.error(f"connection to {where} refused") from exc
        except socket.gaierror as exc:
            if first_hop and exc.errno in _NO_SUCH_HOST:
                raise _NoKeyHere(f"no such host {host}") from exc
            raise self.error(f"cannot resolve {host}: {exc.strerror}") from exc
        except http.client.HTTPException as exc:
            detail = f"{type(exc).__name__} {exc}".rstrip()
            raise self.error(f"invalid HTTP response from {where}: {detail}") from exc
        except OSError as exc:
            raise self.error(f"cannot connect to {where}: {exc.strerror or exc}") from exc
        finally:
            conn.close()

    def _connect_target(self, host: str, port: int) -> tuple[str, int]:
        override = self.resolve.get(host)
        if override is None:
            return host, port
        addr, colon, port_text = override.rpartition(":")
        addr = addr.removeprefix("[").removesuffix("]")  # "[::1]:8443"
        if not colon or not addr or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise self.error(f"resolve override for {host} is {override!r}, "
                             "expected \"address:port\"")
        return addr, int(port_text)

    def _exchange(self, conn: _OverrideHTTPSConnection, target: str) -> _Response:
        sock = conn.sock
        sock.settimeout(self.deadline.remaining())
        conn.request("GET", target, headers={
            "Accept": "application/octet-stream",
            "User-Agent": "xgate-wkd",
            "Connection": "close",
        })
        sock.settimeout(self.deadline.remaining())
        response = conn.getresponse()
        content_type = response.getheader("Content-Type") or ""
        if response.status != 200:
            # The body of a 404 or a redirect is of no interest; do not wait for it.
            return _Response(response.status, response.getheader("Location"), content_type,
                             b"")
        declared = (response.getheader("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self.error(f"response from {conn.host} is {int(declared)} bytes, over the "
                             f"limit of {self.max_bytes}")
        body = bytearray()
        while True:
            # read1 does at most one recv, so the deadline is re-armed before each and a
            # server that trickles bytes cannot stretch the lookup past ``timeout``.
            sock.settimeout(self.deadline.remaining())
            chunk = response.read1(_READ_CHUNK)
            if not chunk:
                break
            body += chunk
            # Checked while reading: a missing or false Content-Length must not let a
            # server fill memory.
            if len(body) > self.max_bytes:
                raise self.error(f"response from {conn.host} is over the limit of "
                                 f"{self.max_bytes} bytes")
        return _Response(200, None, content_type, bytes(body))

    def _check_key(self, url: str, response: _Response) -> None:
        host = _host(url)
        body = response.body
        if not body:
            raise self.error(f"{host} served an empty response")
        if body.lstrip().startswith(b"-----BEGIN PGP"):
            raise self.error(f"{host} served an ASCII-armored key; WKD requires binary")
        if _first_packet_tag(body) != _PUBLIC_KEY_TAG:
            kind = response.content_type.split(";")[0].strip() or "no content type"
            raise self.error(f"{host} served something that is not a binary OpenPGP public "
                             f"key ({kind})")


# getaddrinfo's "this name does not exist" answers; EAI_AGAIN (no DNS server answering) is
# deliberately not among them: that is an outage, not proof of absence.
_NO_SUCH_HOST = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
    if code is not None
)


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _first_packet_tag(data: bytes) -> int | None:
    """Tag of the first OpenPGP packet (RFC 9580, 4.2), or None if it is no packet header."""
    first = data[0]
    if not first & 0x80:
        return None  # bit 7 is set in every packet header; text and HTML never start so
    if first & 0x40:
        return first & 0x3F  # new format
    return (first >> 2) & 0x0F  # legacy format


def _tls_context(address: str, ca_file: Path | None) -> ssl.SSLContext:
    try:
        # With a CA file only that file is trusted; without, the system store.
        context = ssl.create_default_context(
            cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise WkdError(f"WKD lookup for {address}: CA file {ca_file} cannot be loaded: "
                       f"{exc}") from exc
    # Already the defaults of create_default_context; stated so they cannot drift.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def fetch_wkd(address: str, *, timeout: float, ca_file: Path | None = None,
              resolve: Mapping[str, str] | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES) -> WkdResult:
    """Fetch the key published for ``address``: the advanced method, then the direct one.

    ``resolve`` maps a host name to "address:port" to connect to instead of its DNS address;
    TLS is still verified for the host name. Raises WkdKeyNotFound when the domain has no key
    for the address, WkdError for every other failure. The key is unvetted: see the module
    docstring.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    advanced, direct = wkd_urls(address)
    fetcher = _Fetcher(address, context=_tls_context(address, ca_file),
                       deadline=_Deadline(timeout), resolve=resolve or {},
                       max_bytes=max_bytes)
    try:
        return fetcher.fetch(advanced, refused_is_absent=True)
    except _NoKeyHere as miss:
        advanced_reason = miss.reason
    try:
        # A refusing web server at the domain itself may be an outage: not a definite "no".
        return fetcher.fetch(direct, refused_is_absent=False)
    except _NoKeyHere as miss:
        direct_reason = miss.reason
    raise WkdKeyNotFound(f"WKD lookup for {address}: no key published (advanced method: "
                         f"{advanced_reason}; direct method: {direct_reason})")
