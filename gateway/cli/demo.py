"""The demo part of ``xgate init --demo``: enough to send a first message through and to try
the staff web app; ``xgate demo mail``, which shows what the demo catcher caught; and
``xgate demo web``, where the web app and the citizen portal are."""

from __future__ import annotations

import argparse
import secrets
import sys
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from crypto.at_rest import MasterKey
from gateway import tls
from gateway.cli.common import (
    CliError,
    command_session,
    operator_actor,
    operator_name,
    positive_int,
    settings_from_args,
)
from gateway.cli.serve import portal_url, web_url
from gateway.demo import mail as demo_mail
from gateway.demo.keys import create_demo_keys
from gateway.models import utcnow
from gateway.settings import Settings
from gateway.staff import second_factor
from gateway.staff import users as staff
from gateway.staff.actions import create_user
from mailboxes.actions import create_mailbox
from mailboxes.directory import find_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole

DEMO_MAILBOX = "kindertagespflege@jugendamt.example"
DEMO_MAILBOX_NAME = "Kindertagespflege (Demo)"
DEMO_USER = "demo"
DEMO_SENDER = "demo@jugendamt.example"
DEMO_SECOND_USER = "sb"
DEMO_SECOND_SENDER = "sb@jugendamt.example"
# The demo's admin: the admin console (transfers, audit trail, quarantine, keys, users).
DEMO_ADMIN = "admin"
# The demo's citizen portal topics (name, shared mailbox): both reach the demo team.
DEMO_PORTAL_TOPICS = (("Kindertagespflege: Platz anfragen", DEMO_MAILBOX),
                      ("Kindertagespflege: Unterlagen nachreichen", DEMO_MAILBOX))


def create_demo(settings: Settings) -> None:
    _certificate(settings)
    _mailbox(settings)
    _user(settings)
    _members(settings)
    _keys(settings)
    _demo_mail(settings)


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
        create_mailbox(session, DEMO_MAILBOX, DEMO_MAILBOX_NAME, actor=operator_actor())
    print(f"created demo mailbox {DEMO_MAILBOX}")


def _user(settings: Settings) -> None:
    # Two caseworkers: the README's examples use both, and a transfer on a legal basis
    # needs a second person to approve it (four eyes). And an admin for the console, with
    # the second factor set up as for the caseworker who uses the web app.
    for username, addresses, web_login, admin in (
            (DEMO_USER, [DEMO_SENDER], True, False),
            (DEMO_SECOND_USER, [DEMO_SECOND_SENDER], False, False),
            (DEMO_ADMIN, [], True, True)):
        # token_urlsafe(12) gives 16 characters: above staff.MIN_PASSWORD_LENGTH.
        password = secrets.token_urlsafe(12)
        with command_session(settings) as session:
            if staff.find_user(session, username) is not None:
                print(f"kept existing demo staff user {username} (password not shown again)")
                continue
            user = create_user(session, username, password, addresses=addresses,
                               admin=admin, actor=operator_actor())
            totp = (second_factor.enrol_confirmed(session, user.id, _master_key(settings),
                                                  utcnow())
                    if web_login else None)
        print(f"created demo staff user {username} with password {password}")
        if addresses:
            print(f"  (it may submit mail as {', '.join(addresses)})")
        if admin:
            print("  (an admin: the console's transfers, audit trail, quarantine, partners, "
                  "keys and users)")
        if totp is not None:
            # The web app requires the second factor.
            print(f"  its TOTP secret for an authenticator app: {totp}")
            print(f"  ({second_factor.provisioning_uri(totp, username)})")
    print("  (passwords are shown only this once; they are stored hashed)")


def _members(settings: Settings) -> None:
    # The caseworker leads the team's mailbox (the web app shows a user only the mailboxes
    # they are a member of); the colleague works in it.
    for username, role in ((DEMO_USER, MemberRole.LEAD), (DEMO_SECOND_USER, MemberRole.AGENT)):
        with command_session(settings) as session:
            changed = add_member(session, DEMO_MAILBOX, username, role,
                                 actor=operator_actor(), now=utcnow())
        print(f"{'made' if changed else 'kept'} demo staff user {username} "
              f"{role.value} of {DEMO_MAILBOX}")


def _demo_mail(settings: Settings) -> None:
    # Here, not at the top: every xgate command imports this module, few need OpenPGP.
    from gateway.demo.tickets import demo_mail_queued, queue_demo_mail
    from gateway.services import make_pgp_backend

    with command_session(settings) as session:
        if demo_mail_queued(session, DEMO_MAILBOX):
            print(f"kept existing demo mail to {DEMO_MAILBOX}")
            return
        now = utcnow()
        queued = queue_demo_mail(session, _master_key(settings), make_pgp_backend(settings),
                                 DEMO_MAILBOX, actor=operator_actor(), now=now)
    print(f"queued {len(queued)} demo messages to {DEMO_MAILBOX}; 'xgate serve' files them "
          "as tickets:")
    for mail in queued:
        later = ("" if mail.not_before is None else
                 f" (due {(mail.not_before - now).total_seconds() / 60:.0f} minutes later; "
                 "it joins her first mail's ticket)")
        print(f"  {mail.queue_id} from {mail.mail_from}: {mail.subject}{later}")


def login_hint(settings: Settings) -> list[str]:
    lines = [f"the staff web app: open {web_url(settings)} once 'xgate serve' runs,",
             f"  log in as {DEMO_USER} with its password and a one-time code from an "
             "authenticator app",
             "  that has its secret (both printed once, when the user was created);",
             f"  the admin console: log in as {DEMO_ADMIN} the same way"]
    if settings.portal.enabled:
        lines.append(f"the citizen portal (no login; what is sent there becomes a ticket): "
                     f"open {portal_url(settings)}")
    return lines


def _master_key(settings: Settings) -> MasterKey:
    return MasterKey.load(settings.resolve(settings.storage.master_key_file))


def _keys(settings: Settings) -> None:
    master_key = _master_key(settings)
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


# -- xgate demo mail: what the demo catcher caught ---------------------------------------------


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="look at what the demo catcher caught; where the web app is",
        description="For installations made with 'xgate init --demo': the demo catcher "
                    "(started by 'xgate serve') keeps the mail the gateway sends out (notices "
                    "to staff, bounces, mail to partners), sealed with the master key; 'web' "
                    "says where the staff web app is.")
    sub = demo.add_subparsers(dest="demo_command", required=True, metavar="COMMAND")
    mail = sub.add_parser("mail", help="list or show caught messages",
                          description="List or show the messages the demo catcher caught.")
    mail_sub = mail.add_subparsers(dest="mail_command", required=True, metavar="COMMAND")
    ls = mail_sub.add_parser("list", help="one line per caught message, oldest first")
    ls.set_defaults(handler=cmd_mail_list)
    show = mail_sub.add_parser("show", help="one caught message: envelope, headers, text")
    show.add_argument("number", type=positive_int, metavar="N",
                      help="the message's number from 'xgate demo mail list'")
    show.add_argument("--raw", action="store_true",
                      help="print the message exactly as it arrived")
    show.set_defaults(handler=cmd_mail_show)
    web = sub.add_parser("web", help="where the staff web app and the portal are",
                         description="Print the staff web app's address (from [web]), how "
                                     "the demo caseworker logs in, and the citizen portal's "
                                     "address (from [portal], when it is enabled).")
    web.set_defaults(handler=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    for line in login_hint(settings_from_args(args)):
        print(line)
    return 0


def _caught(args: argparse.Namespace) -> tuple[Settings, MasterKey]:
    settings = settings_from_args(args)
    return settings, MasterKey.load(settings.resolve(settings.storage.master_key_file))


def cmd_mail_list(args: argparse.Namespace) -> int:
    settings, master = _caught(args)
    caught = demo_mail.read_all(demo_mail.mail_dir(settings), master)
    if not caught:
        state = "on" if settings.demo.catcher.enabled else "off in this configuration"
        print(f"no mail caught (the demo catcher is {state})")
        return 0
    print(f"{'N':>4}  {'RECEIVED (UTC)':<19}  FROM -> TO: SUBJECT")
    for mail in caught:
        message = BytesParser(policy=policy.default).parsebytes(mail.content, headersonly=True)
        subject = str(message.get("Subject", "(no subject)"))
        print(f"{mail.number:>4}  {mail.received_at:%Y-%m-%d %H:%M:%S}  "
              f"{mail.mail_from or '<>'} -> {', '.join(mail.rcpt_tos)}: {subject}")
    return 0


def cmd_mail_show(args: argparse.Namespace) -> int:
    settings, master = _caught(args)
    try:
        mail = demo_mail.read(demo_mail.mail_dir(settings), master, args.number)
    except LookupError as exc:
        raise CliError(str(exc)) from None
    if args.raw:
        sys.stdout.buffer.write(mail.content)
        sys.stdout.flush()
        return 0
    print(f"caught {mail.received_at:%Y-%m-%d %H:%M:%S} UTC, envelope "
          f"{mail.mail_from or '<>'} -> {', '.join(mail.rcpt_tos)}")
    message = BytesParser(policy=policy.default).parsebytes(mail.content)
    for name in ("From", "To", "Subject", "Date"):
        if message.get(name) is not None:
            print(f"{name}: {message[name]}")
    _print_part(message)
    return 0


def _print_part(part: Message) -> None:
    kind = part.get_content_type()
    payload = part.get_payload()
    if kind == "message/delivery-status" and isinstance(payload, list):
        # RFC 3464: header blocks, one for the message, then one per recipient.
        print(f"\n--- {kind} ---")
        print("\n\n".join(str(block).strip() for block in payload))
    elif isinstance(payload, list):
        for inner in payload:
            if isinstance(inner, Message):
                _print_part(inner)
    elif part.get_content_maintype() == "text":
        print(f"\n--- {kind} ---")
        print(_readable(part))
    else:
        data = part.get_payload(decode=True)
        size = len(data) if isinstance(data, bytes) else 0
        print(f"\n--- {kind} ---")
        print(f"({part.get_filename() or 'unnamed'}, {size} bytes; see --raw)")


def _readable(part: Message) -> str:
    try:
        if isinstance(part, EmailMessage):
            return str(part.get_content()).rstrip("\n")
    except (LookupError, ValueError):
        pass  # an unknown charset or a broken encoding: the bytes as well as they go
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
