"""The office's own Web Key Directory, served by the web listener (admin_ui.public.wkd).

The real app runs under uvicorn over HTTPS on loopback with a certificate for
openpgpkey.jugendamt.example and jugendamt.example from a test CA. Two real clients look the
office's key up by address: our own WKD client (crypto.wkd, through ``resolve`` overrides),
and a citizen's ``gpg --locate-keys``, whose dirmngr trusts the test CA (``hkp-cacert``)
and reaches the listener through a CONNECT proxy (it always asks for port 443). For the
advanced method dirmngr first checks that openpgpkey.<domain> resolves: that test runs gpg
in a mount namespace of its own with an /etc/hosts naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from admin_ui.app import create_app
from crypto import pgp_keys
from crypto.wkd import WkdKeyNotFound, fetch_wkd, wkd_hash, wkd_urls
from gateway.db import read_scope, session_scope
from gateway.keydir.material import parse_partner_material
from gateway.keydir.own_keys import retire_own_key
from gateway.keydir.own_openpgp import generate_own_openpgp, import_own_openpgp
from gateway.keydir.publish import wkd_key
from gateway.services import Services
from tests.support.connect_proxy import ConnectProxy
from tests.support.gpg_partner import GpgPartner
from tests.support.pki import NamedPki, make_named_pki
from tests.support.web import serving_web_app
from tests.support.wkd_server import closed_port

DOMAIN = "jugendamt.example"
ADVANCED_HOST = f"openpgpkey.{DOMAIN}"
MAILBOX = f"kindertagespflege@{DOMAIN}"
OTHER = f"wirtschaftliche.jugendhilfe@{DOMAIN}"
TIMEOUT = 10.0
GPG_TIMEOUT = 120
needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")


@pytest.fixture(scope="module")
def named_pki(tmp_path_factory: pytest.TempPathFactory) -> NamedPki:
    return make_named_pki(tmp_path_factory.mktemp("wkd-publish-pki"),
                          {"office": [ADVANCED_HOST, DOMAIN]})


@pytest.fixture(scope="module")
def office_secret_key(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An office key made by gpg with a second user id and a certification by someone
    else: the directory must publish it cut down to the address asked for."""
    home = tmp_path_factory.mktemp("wkd-office")
    with GpgPartner.create(home) as gpg:
        fpr = gpg.generate(f"Kindertagespflege <{MAILBOX}>", "cv25519")
        gpg.run("--quick-add-uid", fpr, f"Jugendamt <poststelle@{DOMAIN}>")
        other = gpg.generate("Someone <someone@elsewhere.example>", "cv25519")
        gpg.run("--pinentry-mode", "loopback", "--passphrase", "", "-u", other,
                "--quick-sign-key", fpr)
        return gpg.export_secret(fpr)


@pytest.fixture
def office(services: Services, office_secret_key: bytes) -> Services:
    with session_scope(services.sessions) as s:
        import_own_openpgp(s, services.master_key, MAILBOX, office_secret_key, actor="test",
                           now=services.clock())
        generate_own_openpgp(s, services.master_key, OTHER, actor="test",
                             now=services.clock())
    return services


def _own_fingerprint(services: Services, address: str) -> str:
    from gateway.keydir.own_keys import list_own_keys

    with read_scope(services.sessions) as s:
        [key] = [k for k in list_own_keys(s, address) if not k.retired]
        return key.fingerprint


@pytest.fixture
def web(office: Services, named_pki: NamedPki) -> Iterator[int]:
    """The real web app under uvicorn, HTTPS on 127.0.0.1; its port."""
    cert = named_pki.certs["office"]
    with serving_web_app(office.settings, ssl_certfile=str(cert.cert_file),
                         ssl_keyfile=str(cert.key_file)) as port:
        yield port


# --- what is published --------------------------------------------------------------------


def test_our_client_finds_the_office_key_by_the_advanced_method(
        office: Services, web: int, named_pki: NamedPki) -> None:
    address = f"127.0.0.1:{web}"
    found = fetch_wkd(MAILBOX, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                      resolve={ADVANCED_HOST: address, DOMAIN: address})
    assert found.url == wkd_urls(MAILBOX)[0]
    [info] = pgp_keys.describe_keys(found.data)
    assert info.fingerprint == _own_fingerprint(office, MAILBOX)
    # Minimal: only the user id of the address asked for, no third-party certification,
    # the encryption subkey kept; and no secret material, in binary as WKD demands.
    assert info.user_ids == (f"Kindertagespflege <{MAILBOX}>",)
    assert info.can_encrypt
    assert not pgp_keys.has_secret_material(found.data)
    assert not found.data.lstrip().startswith(b"-----BEGIN")
    # What a partner's gateway does with it: a partner key for exactly this address.
    [parsed] = parse_partner_material(found.data)
    assert parsed.addresses == (MAILBOX,) and parsed.can_encrypt


def test_our_client_falls_back_to_the_direct_method(office: Services, web: int,
                                                    named_pki: NamedPki) -> None:
    # No openpgpkey host at all (refused): the domain's own host answers, by its Host.
    found = fetch_wkd(OTHER, timeout=TIMEOUT, ca_file=named_pki.ca_file,
                      resolve={ADVANCED_HOST: f"127.0.0.1:{closed_port()}",
                               DOMAIN: f"127.0.0.1:{web}"})
    assert found.url == wkd_urls(OTHER)[1]
    [info] = pgp_keys.describe_keys(found.data)
    assert info.fingerprint == _own_fingerprint(office, OTHER)
    assert info.emails == (OTHER,)


def test_unknown_and_retired_addresses_are_not_found(office: Services, web: int,
                                                     named_pki: NamedPki) -> None:
    resolve = {ADVANCED_HOST: f"127.0.0.1:{web}", DOMAIN: f"127.0.0.1:{web}"}
    with pytest.raises(WkdKeyNotFound):
        fetch_wkd(f"niemand@{DOMAIN}", timeout=TIMEOUT, ca_file=named_pki.ca_file,
                  resolve=resolve)
    from gateway.keydir.own_keys import list_own_keys

    with session_scope(office.sessions) as s:
        [key] = list_own_keys(s, OTHER)
        retire_own_key(s, key.id, actor="test", now=office.clock())
    with pytest.raises(WkdKeyNotFound):
        fetch_wkd(OTHER, timeout=TIMEOUT, ca_file=named_pki.ca_file, resolve=resolve)


def test_routes_policy_and_refusals(office: Services) -> None:
    digest = wkd_hash("kindertagespflege")
    with TestClient(create_app(office.settings, clock=office.clock),
                    base_url=f"https://{DOMAIN}") as client:
        direct = client.get(f"/.well-known/openpgpkey/hu/{digest}?l=Kindertagespflege")
        assert direct.status_code == 200
        assert direct.headers["content-type"] == "application/octet-stream"
        assert direct.headers["access-control-allow-origin"] == "*"
        advanced = client.get(f"/.well-known/openpgpkey/{DOMAIN}/hu/{digest}",
                              headers={"Host": ADVANCED_HOST})
        assert advanced.content == direct.content
        # The host decides the direct method's domain: another host has nothing here.
        assert client.get(f"/.well-known/openpgpkey/hu/{digest}",
                          headers={"Host": "elsewhere.example"}).status_code == 404
        assert client.get(f"/.well-known/openpgpkey/elsewhere.example/hu/{digest}"
                          ).status_code == 404
        for bad in ("short", "x" * 32, digest.upper()):
            assert client.get(f"/.well-known/openpgpkey/hu/{bad}").status_code == 404
        # The policy file of both methods (empty: no flags), only for the office's domains.
        for path, host in (("/.well-known/openpgpkey/policy", f"{DOMAIN}:443"),
                           (f"/.well-known/openpgpkey/{DOMAIN}/policy", ADVANCED_HOST)):
            policy = client.get(path, headers={"Host": host})
            assert (policy.status_code, policy.content) == (200, b"")
        assert client.get("/.well-known/openpgpkey/policy",
                          headers={"Host": "elsewhere.example"}).status_code == 404
        assert client.get("/.well-known/openpgpkey/elsewhere.example/policy"
                          ).status_code == 404


def test_rollover_publishes_the_newest_key_in_use(office: Services) -> None:
    digest = wkd_hash("wirtschaftliche.jugendhilfe")
    first = _own_fingerprint(office, OTHER)
    office.clock.advance(60)  # type: ignore[attr-defined]
    with session_scope(office.sessions) as s:
        newer = generate_own_openpgp(s, office.master_key, OTHER, actor="test",
                                     now=office.clock()).fingerprint
    with read_scope(office.sessions) as s:
        published = wkd_key(s, DOMAIN, digest, office.clock())
    assert published is not None
    assert pgp_keys.describe_keys(published)[0].fingerprint == newer != first
    # Once it expires, nothing is published for the address any more.
    with read_scope(office.sessions) as s:
        assert wkd_key(s, DOMAIN, digest, office.clock() + timedelta(days=3 * 365)) is None


# --- gpg --locate-keys ----------------------------------------------------------------------
#
# dirmngr (GnuPG 2.2, built with GnuTLS) trusts only the system's CA bundle for WKD (its
# hkp-cacert option is for keyservers), always asks for port 443, and uses the advanced
# method only when openpgpkey.<domain> resolves. So gpg runs in a mount namespace of its
# own, where /etc/ssl/certs/ca-certificates.crt is the test CA and /etc/hosts is the test's
# (the machine's files stay as they are), and reaches the listener through a CONNECT proxy.

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _private_etc(directory: Path, named_pki: NamedPki, *,
                 advanced_host: bool) -> list[str] | None:
    """A command prefix running a program with the test CA as the system's CA bundle and
    an /etc/hosts that names openpgpkey.<domain> or not; None if the machine does not
    allow a private mount namespace."""
    if shutil.which("unshare") is None or not SYSTEM_CA_BUNDLE.is_file():
        return None
    hosts = directory / "hosts"
    hosts.write_text("127.0.0.1 localhost\n"
                     + (f"127.0.0.1 {ADVANCED_HOST}\n" if advanced_host else ""))
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else \
        ["unshare", "--user", "--map-root-user", "--mount"]
    script = (f'mount --bind "{hosts}" /etc/hosts && '
              f'mount --bind "{named_pki.ca_file}" "{SYSTEM_CA_BUNDLE}" && exec "$@"')
    prefix = [*unshare, "sh", "-c", script, "sh"]
    probe = subprocess.run([*prefix, "cat", str(SYSTEM_CA_BUNDLE)], capture_output=True,
                           timeout=GPG_TIMEOUT, check=False)
    return prefix if probe.stdout == named_pki.ca_file.read_bytes() else None


@contextmanager
def citizen_gpg(home: Path, proxy: ConnectProxy) -> Iterator[GpgPartner]:
    """A citizen's GnuPG whose dirmngr goes through the proxy (and logs, for failures)."""
    gpg = GpgPartner.create(home)
    (home / "dirmngr.conf").write_text(
        f"http-proxy {proxy.url}\nresolver-timeout 2\n"
        f"log-file {home / 'dirmngr.log'}\nverbose\ndebug-level advanced\n")
    try:
        yield gpg
    finally:
        gpg.close()
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "dirmngr"],
                       capture_output=True, timeout=GPG_TIMEOUT, check=False)


def _locate(prefix: list[str], home: Path, address: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*prefix, "gpg", "--homedir", str(home), "--batch", "--no-tty",
                           "--auto-key-locate", "clear,nodefault,wkd", "--locate-keys",
                           address], capture_output=True, timeout=GPG_TIMEOUT, check=False)


def _explain(located: subprocess.CompletedProcess[bytes], home: Path) -> str:
    log = home / "dirmngr.log"
    return located.stderr.decode(errors="replace") + "\n--- dirmngr.log ---\n" + (
        log.read_text(errors="replace")[-6000:] if log.exists() else "(none)")


def _imported(gpg: GpgPartner, address: str) -> tuple[str, list[str]]:
    listing = gpg.run("--with-colons", "--list-keys", address).stdout.decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    uids = [line.split(":")[9] for line in listing.splitlines() if line.startswith("uid:")]
    return fpr, uids


@needs_gpg
@pytest.mark.parametrize(("advanced", "address", "uid"), [
    (False, MAILBOX, f"Kindertagespflege <{MAILBOX}>"),
    (True, OTHER, f"<{OTHER}>"),
], ids=["direct", "advanced"])
def test_gpg_locates_the_office_key(office: Services, web: int, named_pki: NamedPki,
                                    tmp_path_factory: pytest.TempPathFactory,
                                    advanced: bool, address: str, uid: str) -> None:
    prefix = _private_etc(tmp_path_factory.mktemp("etc"), named_pki, advanced_host=advanced)
    if prefix is None:
        pytest.skip("cannot give gpg a CA bundle and /etc/hosts of its own "
                    "(unshare --mount refused)")
    with ConnectProxy(("127.0.0.1", web), {ADVANCED_HOST, DOMAIN}) as proxy, \
            citizen_gpg(tmp_path_factory.mktemp("citizen"), proxy) as gpg:
        located = _locate(prefix, gpg.home, address)
        assert located.returncode == 0, _explain(located, gpg.home)
        fpr, uids = _imported(gpg, address)
        # Where openpgpkey.<domain> resolves, gpg asks there (advanced), else the domain.
        host = urlsplit(wkd_urls(address)[0 if advanced else 1]).hostname
        assert proxy.seen == [f"{host}:443"]
    assert fpr == _own_fingerprint(office, address)
    assert uids == [uid]
