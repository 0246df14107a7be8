"""WKD client against a real HTTPS server on loopback.

The client connects to 127.0.0.1 through ``resolve`` overrides but must verify the server's
certificate for the real host names (openpgpkey.partner.example, partner.example), which the
test CA's certificate names. The key in the end-to-end test is made by the gpg CLI.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crypto.errors import CryptoError
from crypto.wkd import (
    MAX_REDIRECTS,
    WkdError,
    WkdKeyNotFound,
    fetch_wkd,
    wkd_hash,
    wkd_urls,
    zbase32,
)
from tests.support.pki import NamedPki, make_named_pki
from tests.support.wkd_server import BlackHole, Reply, WkdServer, closed_port

ADDRESS = "Joe.Doe@partner.example"
ADVANCED_HOST = "openpgpkey.partner.example"
DIRECT_HOST = "partner.example"
ADVANCED_URL, DIRECT_URL = wkd_urls(ADDRESS)
ADVANCED_PATH = urlsplit(ADVANCED_URL).path
DIRECT_PATH = urlsplit(DIRECT_URL).path
# Shaped like a key to the client's sanity check (new-format Public-Key packet header, tag 6);
# the client does not parse further, the caller's import does.
FAKE_KEY = bytes([0xC6, 0x33]) + bytes(range(0x33))
TIMEOUT = 5.0  # generous: only the timeout tests are meant to run into it


@pytest.fixture(scope="module")
def named_pki(tmp_path_factory: pytest.TempPathFactory) -> NamedPki:
    return make_named_pki(tmp_path_factory.mktemp("wkd-pki"), {
        "partner": [ADVANCED_HOST, DIRECT_HOST, "keys.partner.example"],
        "elsewhere": ["www.elsewhere.example"],
    })


@pytest.fixture(scope="module")
def unrelated_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_named_pki(tmp_path_factory.mktemp("wkd-other-ca"), {}).ca_file


@pytest.fixture
def server(named_pki: NamedPki) -> Iterator[WkdServer]:
    with WkdServer(named_pki.certs["partner"]) as srv:
        yield srv


def fetch(server: WkdServer, named_pki: NamedPki, **kwargs: Any) -> bytes:
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("ca_file", named_pki.ca_file)
    kwargs.setdefault("resolve", server.resolve(ADVANCED_HOST, DIRECT_HOST,
                                                "keys.partner.example"))
    return fetch_wkd(ADDRESS, **kwargs).data


# --- names and URLs -----------------------------------------------------------------------


def test_zbase32_known_vectors() -> None:
    # Byte-aligned examples of the z-base-32 specification.
    assert zbase32(bytes.fromhex("f0bfc7")) == "6n9hq"
    assert zbase32(bytes.fromhex("d47a04")) == "4t7ye"
    assert zbase32(b"\x00") == "yy"
    assert zbase32(b"") == ""


def test_wkd_urls_match_the_drafts_example() -> None:
    assert wkd_urls("Joe.Doe@Example.ORG") == (
        "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/"
        "iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe",
        "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q"
        "?l=Joe.Doe",
    )


def test_hash_lowers_ascii_only() -> None:
    assert wkd_hash("JOE.DOE") == wkd_hash("joe.doe") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
    # Non-ASCII letters are hashed as given (the draft), so "Ä" and "ä" differ.
    assert wkd_hash("Jörg") == zbase32(hashlib.sha1("jörg".encode()).digest())
    assert wkd_hash("JÄGER") != wkd_hash("jäger")


def test_local_part_is_percent_encoded_unchanged() -> None:
    advanced, direct = wkd_urls("Anna+Amt@partner.example")
    assert advanced.endswith("?l=Anna%2BAmt")
    assert direct.endswith("?l=Anna%2BAmt")


@pytest.mark.parametrize(("address", "problem"), [
    ("no-at-sign", "not a mail address"),
    ("@partner.example", "not a mail address"),
    ("joe@", "not a mail address"),
    ("joe doe@partner.example", "blanks or control characters"),
    ("joe@partner.example/evil", "not a valid domain name"),
    ("joe@-partner.example", "not a valid domain name"),
    ("joe@10.0.0.1", "IP address"),
    ("joe@jugendamt-straße.example", "non-ASCII domain"),
])
def test_unusable_addresses_are_refused(address: str, problem: str) -> None:
    with pytest.raises(WkdError, match=problem):
        wkd_urls(address)


# --- lookups over real HTTPS --------------------------------------------------------------


def test_advanced_method_hit(server: WkdServer, named_pki: NamedPki) -> None:
    server.routes[ADVANCED_PATH] = FAKE_KEY
    server.routes[DIRECT_PATH] = b"\xc6\x01\x00"  # must not be reached
    result = fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                       resolve=server.resolve(ADVANCED_HOST, DIRECT_HOST))
    assert result.url == ADVANCED_URL
    assert result.data == FAKE_KEY
    [seen] = server.requests
    assert seen.sni == ADVANCED_HOST
    assert seen.host == ADVANCED_HOST
    assert seen.target == urlsplit(ADVANCED_URL).path + "?l=Joe.Doe"


def test_falls_back_to_direct_when_advanced_has_no_key(server: WkdServer,
                                                       named_pki: NamedPki) -> None:
    server.routes[DIRECT_PATH] = FAKE_KEY
    result = fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                       resolve=server.resolve(ADVANCED_HOST, DIRECT_HOST))
    assert result.url == DIRECT_URL
    assert result.data == FAKE_KEY
    assert [(r.sni, r.host, r.target.split("?")[0]) for r in server.requests] == [
        (ADVANCED_HOST, ADVANCED_HOST, ADVANCED_PATH),
        (DIRECT_HOST, DIRECT_HOST, DIRECT_PATH),
    ]


def test_no_key_at_either_method(server: WkdServer, named_pki: NamedPki) -> None:
    with pytest.raises(WkdKeyNotFound) as caught:
        fetch(server, named_pki)
    message = str(caught.value)
    assert message.startswith(f"WKD lookup for {ADDRESS}: no key published")
    assert "\n" not in message
    assert len(server.requests) == 2
    assert isinstance(caught.value, CryptoError)


def test_refused_advanced_host_falls_back_to_direct(server: WkdServer,
                                                    named_pki: NamedPki) -> None:
    server.routes[DIRECT_PATH] = FAKE_KEY
    resolve = {ADVANCED_HOST: f"127.0.0.1:{closed_port()}", DIRECT_HOST: server.address}
    result = fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file, resolve=resolve)
    assert result.url == DIRECT_URL


def test_refused_direct_host_is_an_error_not_a_missing_key(named_pki: NamedPki) -> None:
    port = closed_port()
    resolve = {ADVANCED_HOST: f"127.0.0.1:{port}", DIRECT_HOST: f"127.0.0.1:{port}"}
    refused = rf"connection to {re.escape(DIRECT_HOST)} .*refused"
    with pytest.raises(WkdError, match=refused) as caught:
        fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file, resolve=resolve)
    assert not isinstance(caught.value, WkdKeyNotFound)


def _fake_dns(monkeypatch: pytest.MonkeyPatch, failing_host: str, errno: int,
              *more_failing: str) -> None:
    # No test may depend on the sandbox's DNS; this stands in for the resolver's answer
    # about these names and passes everything else (the 127.0.0.1 overrides) through.
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (failing_host, *more_failing):
            raise socket.gaierror(errno, "simulated resolver answer")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_nonexistent_advanced_host_falls_back_to_direct(
        server: WkdServer, named_pki: NamedPki, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, ADVANCED_HOST, socket.EAI_NONAME)
    server.routes[DIRECT_PATH] = FAKE_KEY
    result = fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                       resolve=server.resolve(DIRECT_HOST))
    assert result.url == DIRECT_URL


def test_domain_without_any_wkd_host_has_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, ADVANCED_HOST, socket.EAI_NONAME, DIRECT_HOST)
    with pytest.raises(WkdKeyNotFound, match=re.escape(f"no such host {DIRECT_HOST}")):
        fetch_wkd(ADDRESS, timeout=TIMEOUT)


def test_dns_outage_for_advanced_host_does_not_fall_back(
        server: WkdServer, named_pki: NamedPki, monkeypatch: pytest.MonkeyPatch) -> None:
    # EAI_AGAIN says "could not ask", not "does not exist".
    _fake_dns(monkeypatch, ADVANCED_HOST, socket.EAI_AGAIN)
    server.routes[DIRECT_PATH] = FAKE_KEY
    with pytest.raises(WkdError, match=re.escape(f"cannot resolve {ADVANCED_HOST}")):
        fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                  resolve=server.resolve(DIRECT_HOST))
    assert server.requests == []


def test_server_error_on_advanced_does_not_fall_back(server: WkdServer,
                                                     named_pki: NamedPki) -> None:
    server.routes[ADVANCED_PATH] = Reply(status=503, body=b"busy")
    server.routes[DIRECT_PATH] = FAKE_KEY
    with pytest.raises(WkdError, match=re.escape(f"HTTP 503 from {ADVANCED_HOST}")):
        fetch(server, named_pki)
    assert len(server.requests) == 1


# --- TLS ----------------------------------------------------------------------------------


def test_untrusted_ca_is_a_tls_error(server: WkdServer, named_pki: NamedPki,
                                     unrelated_ca: Path) -> None:
    server.routes[ADVANCED_PATH] = FAKE_KEY
    server.routes[DIRECT_PATH] = FAKE_KEY
    with pytest.raises(WkdError) as caught:
        fetch(server, named_pki, ca_file=unrelated_ca)
    message = str(caught.value)
    assert message.startswith(f"WKD lookup for {ADDRESS}: TLS verification failed for "
                              f"{ADVANCED_HOST}: ")
    assert "certificate" in message
    assert server.requests == []  # and no fallback to the direct method


def test_certificate_for_another_name_is_refused(named_pki: NamedPki) -> None:
    # Signed by the trusted CA, but for www.elsewhere.example only.
    with WkdServer(named_pki.certs["elsewhere"], {ADVANCED_PATH: FAKE_KEY}) as srv:
        with pytest.raises(WkdError,
                           match=re.escape(f"TLS verification failed for {ADVANCED_HOST}: "
                                           "Hostname mismatch")):
            fetch(srv, named_pki)
        assert srv.requests == []


def test_system_store_does_not_trust_the_test_ca(server: WkdServer) -> None:
    # ca_file=None means the system's CAs, which do not include the test CA.
    server.routes[ADVANCED_PATH] = FAKE_KEY
    with pytest.raises(WkdError, match="TLS verification failed"):
        fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=None,
                  resolve=server.resolve(ADVANCED_HOST, DIRECT_HOST))


def test_unreadable_ca_file(tmp_path: Path) -> None:
    with pytest.raises(WkdError, match=r"CA file .* cannot be loaded"):
        fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=tmp_path / "missing.pem")


def test_malformed_resolve_override(named_pki: NamedPki) -> None:
    with pytest.raises(WkdError, match=re.escape(f"resolve override for {ADVANCED_HOST}")):
        fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                  resolve={ADVANCED_HOST: "127.0.0.1"})


# --- what the server sends ----------------------------------------------------------------


@pytest.mark.parametrize("send_length", [True, False])
def test_oversize_response_is_refused(server: WkdServer, named_pki: NamedPki,
                                      send_length: bool) -> None:
    # With and without Content-Length: the limit must hold while reading, too.
    limit = 4096
    server.routes[ADVANCED_PATH] = Reply(body=b"\xc6" + b"\x00" * limit,
                                         send_length=send_length)
    with pytest.raises(WkdError, match=f"over the limit of {limit}"):
        fetch(server, named_pki, max_bytes=limit)


def test_response_at_the_limit_is_accepted(server: WkdServer, named_pki: NamedPki) -> None:
    body = b"\xc6" + b"\x00" * 4095
    server.routes[ADVANCED_PATH] = Reply(body=body, send_length=False)
    assert fetch(server, named_pki, max_bytes=4096) == body


@pytest.mark.parametrize(("body", "content_type", "problem"), [
    (b"<!DOCTYPE html><html>Welcome</html>", "text/html; charset=utf-8",
     r"not a binary OpenPGP public key \(text/html\)"),
    (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF...\n", "application/pgp-keys",
     "ASCII-armored key; WKD requires binary"),
    (b"", "application/octet-stream", "empty response"),
    # A secret-key packet (tag 5) is not what a directory may publish.
    (bytes([0xC5, 0x01, 0x00]), "application/octet-stream", "not a binary OpenPGP public key"),
])
def test_non_key_content_is_refused(server: WkdServer, named_pki: NamedPki, body: bytes,
                                    content_type: str, problem: str) -> None:
    server.routes[ADVANCED_PATH] = Reply(body=body, headers=(("Content-Type", content_type),))
    with pytest.raises(WkdError, match=problem):
        fetch(server, named_pki)


def test_legacy_packet_format_is_accepted(server: WkdServer, named_pki: NamedPki) -> None:
    legacy = bytes([0x99, 0x00, 0x02, 0x04, 0x00])  # old format, tag 6, two-octet length
    server.routes[ADVANCED_PATH] = legacy
    assert fetch(server, named_pki) == legacy


# --- redirects ----------------------------------------------------------------------------


def test_https_redirect_is_followed(server: WkdServer, named_pki: NamedPki) -> None:
    target = "https://keys.partner.example/wkd/joe"
    server.routes[DIRECT_PATH] = Reply(status=301, headers=(("Location", target),))
    server.routes["/wkd/joe"] = FAKE_KEY
    result = fetch_wkd(ADDRESS, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                       resolve=server.resolve(ADVANCED_HOST, DIRECT_HOST,
                                              "keys.partner.example"))
    assert result.url == target
    assert result.data == FAKE_KEY
    assert server.requests[-1].sni == "keys.partner.example"


def test_redirect_to_plain_http_is_refused(server: WkdServer, named_pki: NamedPki) -> None:
    server.routes[ADVANCED_PATH] = Reply(
        status=302, headers=(("Location", "http://partner.example/key"),))
    with pytest.raises(WkdError, match="redirected to a non-HTTPS URL"):
        fetch(server, named_pki)
    assert len(server.requests) == 1


def test_redirect_loop_is_bounded(server: WkdServer, named_pki: NamedPki) -> None:
    server.routes[ADVANCED_PATH] = Reply(status=307, headers=(("Location", ADVANCED_PATH),))
    with pytest.raises(WkdError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetch(server, named_pki)
    assert len(server.requests) == MAX_REDIRECTS + 1


# --- time ---------------------------------------------------------------------------------


def test_server_that_never_answers_times_out(server: WkdServer, named_pki: NamedPki) -> None:
    server.routes[ADVANCED_PATH] = Reply(stall=True)
    started = time.monotonic()
    expected = re.escape(f"timed out after 0.3 s talking to {ADVANCED_HOST}")
    with pytest.raises(WkdError, match=expected):
        fetch(server, named_pki, timeout=0.3)
    assert time.monotonic() - started < 2


def test_server_that_never_starts_tls_times_out(named_pki: NamedPki) -> None:
    with BlackHole() as hole:
        started = time.monotonic()
        with pytest.raises(WkdError, match="timed out"):
            fetch_wkd(ADDRESS, timeout=0.3, ca_file=named_pki.ca_file,
                      resolve={ADVANCED_HOST: hole.address, DIRECT_HOST: hole.address})
        assert time.monotonic() - started < 2


def test_trickling_body_cannot_stretch_the_deadline(server: WkdServer,
                                                    named_pki: NamedPki) -> None:
    # Each byte arrives well within the timeout, the whole body does not.
    server.routes[ADVANCED_PATH] = Reply(body=FAKE_KEY[:20], drip_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(WkdError, match="timed out"):
        fetch(server, named_pki, timeout=0.4)
    assert time.monotonic() - started < 2


# --- a real key ---------------------------------------------------------------------------


GPG_TIMEOUT = 120  # key generation on a loaded CI box; usually well under a second


def _gpg(home: Path, *args: str) -> bytes:
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
                          capture_output=True, timeout=GPG_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"gpg {args} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg binary not installed")
def test_key_made_by_gpg_is_fetched_byte_identical(
        server: WkdServer, named_pki: NamedPki,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # Short path: gpg-agent's socket lives in the home and must fit in sun_path.
    home = tmp_path_factory.mktemp("wkd-gpg")
    home.chmod(0o700)
    try:
        _gpg(home, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-generate-key",
             f"Joe Doe <{ADDRESS}>", "ed25519", "sign", "never")
        exported = _gpg(home, "--export", ADDRESS)
        # gpg's own idea of the WKD hash agrees with ours.
        listing = _gpg(home, "--with-wkd-hash", "--list-keys", ADDRESS).decode()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, timeout=GPG_TIMEOUT, check=False)
    assert f"{wkd_hash('Joe.Doe')}@partner.example" in listing
    server.routes[ADVANCED_PATH] = exported
    assert fetch(server, named_pki) == exported
