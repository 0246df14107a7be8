"""The demo part of ``xgate init --demo``: enough to send a first message through."""

from __future__ import annotations

import secrets

from crypto.at_rest import MasterKey
from gateway import staff, tls
from gateway.cli_common import command_session, operator_name
from gateway.demo_keys import create_demo_keys
from gateway.settings import Settings
from mailboxes.directory import add_mailbox, find_mailbox

DEMO_MAILBOX = "kindertagespflege@jugendamt.example"
DEMO_MAILBOX_NAME = "Kindertagespflege (Demo)"
DEMO_USER = "demo"
DEMO_SENDER = "demo@jugendamt.example"


def create_demo(settings: Settings) -> None:
    _certificate(settings)
    _mailbox(settings)
    _user(settings)
    _keys(settings)


def _certificate(settings: Settings) -> None:
    cert = settings.resolve(settings.tls.cert_file)
    key = settings.resolve(settings.tls.key_file)
    if key.exists():
        # An existing key is never replaced (it may be a real one someone deployed).
        print(f"kept existing TLS certificate {cert}")
        return
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    tls.generate_self_signed(cert, key, settings.smtp.hostname)
    print(f"generated self-signed TLS certificate {cert} for {settings.smtp.hostname}")


def _mailbox(settings: Settings) -> None:
    with command_session(settings) as session:
        if find_mailbox(session, DEMO_MAILBOX) is not None:
            print(f"kept existing demo mailbox {DEMO_MAILBOX}")
            return
        add_mailbox(session, DEMO_MAILBOX, DEMO_MAILBOX_NAME)
    print(f"created demo mailbox {DEMO_MAILBOX}")


def _user(settings: Settings) -> None:
    # token_urlsafe(12) gives 16 characters: above staff.MIN_PASSWORD_LENGTH.
    password = secrets.token_urlsafe(12)
    with command_session(settings) as session:
        if staff.find_user(session, DEMO_USER) is not None:
            print(f"kept existing demo staff user {DEMO_USER} (password not shown again)")
            return
        staff.add_user(session, DEMO_USER, password, addresses=[DEMO_SENDER])
    print(f"created demo staff user {DEMO_USER} with password {password}")
    print(f"  (it may submit mail as {DEMO_SENDER})")
    print("  (shown only this once; it is stored hashed)")


def _keys(settings: Settings) -> None:
    master_key = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    with command_session(settings) as session:
        ca_pem, made = create_demo_keys(session, master_key, [DEMO_MAILBOX, DEMO_SENDER],
                                        actor=operator_name())
    for line in made:
        print(f"created demo key: {line}")
    if ca_pem is not None:
        path = settings.resolve(settings.data_dir) / "keys" / "demo-ca.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(ca_pem)
        print(f"  (S/MIME certificates issued by a throwaway demo CA, {path}; its private "
              "key was discarded)")
