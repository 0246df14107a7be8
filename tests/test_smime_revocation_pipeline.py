"""A partner certificate revoked while the workers run: the next message is judged by the new
CRL, never by the chain validation remembered from the messages before.

openssl is the partner (signs, then encrypts); the worker's decrypt and verify stages run on
the real services with the trust store reading the anchor and CRL files an admin replaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.db import session_scope
from gateway.models import MessageState
from gateway.services import Services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support import crypto_setup
from tests.support.openssl_partner import OpensslPartner, crlf, mail
from tests.support.pipeline import drain, enqueue, filed_copies, load_message
from tests.support.smime_pki import Party, make_ca, make_crl, make_person

MAILBOX = "hilfeplan@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHilfeplan fuer Kind A.\r\n"


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Party
    partner: Party
    ours: Party


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("revocation-pipeline")
    ca = make_ca(d, "ca", bits=2048)
    return Pki(d, ca, make_person(d, "partner", PARTNER, ca, bits=2048),
               make_person(d, "ours", MAILBOX, ca))


def _crl_bytes(pki: Pki, revoked: list[Party]) -> bytes:
    directory = pki.directory / os.urandom(6).hex()
    directory.mkdir()
    return make_crl(directory, pki.ca, revoked).read_bytes()


@pytest.fixture
def crl_file(tmp_path: Path, pki: Pki) -> Path:
    path = tmp_path / "ca.crl.pem"
    path.write_bytes(_crl_bytes(pki, []))
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str, pki: Pki, crl_file: Path) -> Settings:
    return make_settings(tmp_path / "var", database_url, crypto={
        "trust_anchors_file": str(pki.ca.cert_pem), "crl_files": [str(crl_file)]})


@pytest.fixture
def gw(services: Services, pki: Pki) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
    crypto_setup.own_smime(services, MAILBOX, pki.ours)
    return services


def _send(gw: Services, pki: Pki, openssl: OpensslPartner) -> str:
    signed = openssl.sign(ENTITY, pki.partner, pki.ca, opaque=True)
    sealed = openssl.encrypt(crlf(signed), pki.ours, cipher="-aes-256-gcm")
    qid = enqueue(gw, [MAILBOX], mail(sealed, sender=PARTNER, to=MAILBOX), mail_from=PARTNER)
    drain(gw)
    return qid


def test_a_crl_replaced_between_two_messages_is_applied_to_the_second(
        gw: Services, pki: Pki, crl_file: Path, tmp_path: Path) -> None:
    openssl = OpensslPartner(tmp_path)
    for _ in range(2):
        qid = _send(gw, pki, openssl)
        message = load_message(gw, qid)
        assert message.state == MessageState.DELIVERED, message.reason
    assert len(filed_copies(gw, MAILBOX)) == 2
    # The worker took the partner's chain from the trust store's cache the second time.
    assert len(gw.trust.chain_cache) == 1

    crl_file.write_bytes(_crl_bytes(pki, [pki.partner]))
    stamp = crl_file.stat().st_mtime_ns + 1_000_000_000
    os.utime(crl_file, ns=(stamp, stamp))  # a new mtime even on a coarse file system clock

    qid = _send(gw, pki, openssl)
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and "revoked" in message.reason, message.reason
    assert len(filed_copies(gw, MAILBOX)) == 2
