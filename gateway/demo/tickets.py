"""Demo mail for ``xgate init --demo``: a few messages to the demo mailbox, so that the staff
web app shows tickets from the first start.

They are queued as inbound mail, exactly as the SMTP listener stores what it accepts; the
worker of ``xgate serve`` then scans, decrypts, verifies, files and threads them like any
other mail. Nothing here writes a ticket: the demo shows the real path, and a change to
that path shows in the demo too.

A childminder asks about a placement, and writes again a little later (her follow-up refers
to her first mail, so it joins the same ticket); a counselling service sends a report signed
and encrypted with OpenPGP (its key is a demo partner key, approved, so the signature is
verified); parents write an HTML mail from a webmail service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from crypto.pgp_backend import PgpBackend
from crypto.pgp_keys import generate_key, public_part
from crypto.pgp_mime import seal_pgp_mime
from gateway.keydir.keys import import_partner_keys
from gateway.keydir.models import KeyKind, KeySource
from gateway.keydir.own_keys import list_own_keys
from gateway.keydir.partners import add_partner, find_partner
from gateway.models import Direction, Message, Recipient
from gateway.queue.spool import Envelope, store_received

CHILDMINDER = "s.krueger@tagespflege-krueger.example"
COUNSELLING = "beratung@eb-sonnenberg.example"
COUNSELLING_PARTNER = "Erziehungsberatungsstelle Sonnenberg (Demo)"
PARENTS = "a.yilmaz@webmail.example"
SENDERS = (CHILDMINDER, COUNSELLING, PARENTS)
# With the Turkish dotless i: a name beyond Latin-1, in the header and in the text.
YILMAZ = "Y\u0131lmaz"
# The follow-up waits this long, so that a second worker cannot take it up before the mail
# it answers has become a ticket (it would become a ticket of its own). Long enough for a
# first attempt that waits for a starting virus scanner (the retry comes after a minute).
FOLLOW_UP_DELAY = timedelta(minutes=2)

SUBJECT_PLACEMENT = "Freier Betreuungsplatz ab 1. März - Anfrage zur Vermittlung"
SUBJECT_REPORT = "Stellungnahme zum Beratungsverlauf (Kindertagespflege)"
SUBJECT_HTML = "Wir suchen einen Platz in der Kindertagespflege für unsere Tochter"


@dataclass(frozen=True)
class QueuedDemoMail:
    queue_id: str
    mail_from: str
    subject: str
    not_before: datetime | None


def demo_mail_queued(session: Session, mailbox: str) -> bool:
    """Whether demo mail for ``mailbox`` is in the queue (processed or not) already."""
    found = session.scalars(
        select(Message.id).join(Recipient, Recipient.message_id == Message.id)
        .where(Message.mail_from.in_(SENDERS), Recipient.address == mailbox).limit(1)).first()
    return found is not None


def queue_demo_mail(session: Session, master: MasterKey, backend: PgpBackend, mailbox: str, *,
                    actor: str, now: datetime) -> list[QueuedDemoMail]:
    """Queue the demo messages for ``mailbox`` (which has an own OpenPGP key), in the
    caller's transaction. The caller checks ``demo_mail_queued`` first."""
    placement_id = make_msgid(domain="tagespflege-krueger.example")
    mails = [
        (CHILDMINDER, SUBJECT_PLACEMENT, _placement(mailbox, placement_id, now), None),
        (COUNSELLING, SUBJECT_REPORT,
         _report(session, backend, mailbox, actor=actor, now=now), None),
        (PARENTS, SUBJECT_HTML, _html_mail(mailbox, now), None),
        (CHILDMINDER, "AW: " + SUBJECT_PLACEMENT,
         _follow_up(mailbox, placement_id, now + FOLLOW_UP_DELAY), now + FOLLOW_UP_DELAY),
    ]
    queued = []
    for mail_from, subject, data, not_before in mails:
        stored = store_received(session, master, Envelope(
            Direction.INBOUND, mail_from, [mailbox], data), actor=actor, now=now,
            not_before=not_before)
        queued.append(QueuedDemoMail(stored.queue_id, mail_from, subject, not_before))
    return queued


def _headers(pairs: Iterable[tuple[str, str]]) -> bytes:
    # RFC 2047 for the umlauts, folded as a mail client does.
    return b"".join(policy.SMTP.fold_binary(name, value) for name, value in pairs)


def _message(sender: str, mailbox: str, subject: str, when: datetime, message_id: str,
             **more: str) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = f"Kindertagespflege <{mailbox}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id
    for name, value in more.items():
        message[name.replace("_", "-")] = value
    return message


def _placement(mailbox: str, message_id: str, now: datetime) -> bytes:
    message = _message(f"Sabine Krüger <{CHILDMINDER}>", mailbox, SUBJECT_PLACEMENT, now,
                       message_id)
    message.set_content(
        "Sehr geehrte Damen und Herren,\n\n"
        "zum 1. März wird in meiner Kindertagespflegestelle ein Platz frei (Betreuung "
        "montags bis freitags von 7:30 bis 14:00 Uhr, für ein Kind unter drei Jahren).\n\n"
        "Können Sie mir ein Kind vermitteln, dessen Eltern einen Platz suchen? Meine "
        "Pflegeerlaubnis gilt noch bis Ende des Jahres; bitte sagen Sie mir auch, wann ich "
        "die Verlängerung beantragen sollte und welche Unterlagen Sie dafür brauchen.\n\n"
        "Mit freundlichen Grüßen\n"
        "Sabine Krüger\n"
        "Kindertagespflege „Kleine Strolche“\n"
        "Am Mühlbach 4, 12345 Musterstadt\n", cte="quoted-printable")
    return message.as_bytes()


def _follow_up(mailbox: str, answered: str, when: datetime) -> bytes:
    # Sent from her mail program's "sent" folder as a reply to her own first mail: it refers
    # to that mail's Message-ID, which is how the worker threads it into the same ticket.
    message = _message(f"Sabine Krüger <{CHILDMINDER}>", mailbox, "AW: " + SUBJECT_PLACEMENT,
                       when, make_msgid(domain="tagespflege-krueger.example"),
                       In_Reply_To=answered, References=answered)
    message.set_content(
        "Guten Tag,\n\n"
        "ein Nachtrag zu meiner Mail von heute: Der Platz wäre auch schon ab dem "
        "15. Februar frei, und dienstags könnte ich die Betreuung bis 16:00 Uhr anbieten.\n\n"
        "Viele Grüße\n"
        "Sabine Krüger\n\n"
        "> zum 1. März wird in meiner Kindertagespflegestelle ein Platz frei …\n",
        cte="quoted-printable")
    return message.as_bytes()


def _html_mail(mailbox: str, now: datetime) -> bytes:
    message = _message(f"Ayşe {YILMAZ} <{PARENTS}>", mailbox, SUBJECT_HTML, now,
                       make_msgid(domain="webmail.example"))
    message.set_content(
        "Hallo,\n\n"
        "wir suchen ab Mai einen Platz in der Kindertagespflege für unsere Tochter Elif "
        "(dann 14 Monate alt), wenn möglich in der Nähe des Hauptbahnhofs.\n\n"
        "- Betreuungszeit: etwa 25 Stunden in der Woche, vormittags\n"
        "- Wir sprechen zu Hause Deutsch und Türkisch\n\n"
        "Wie beantragen wir die Förderung, und welche Tagespflegepersonen haben noch Plätze "
        "frei?\n\n"
        f"Viele Grüße\nAyşe und Murat {YILMAZ}\n", cte="quoted-printable")
    message.add_alternative(
        '<html><body style="font-family: Arial, sans-serif">'
        "<p>Hallo,</p>"
        "<p>wir suchen ab <b>Mai</b> einen Platz in der Kindertagespflege für unsere "
        "Tochter Elif (dann 14&nbsp;Monate alt), wenn möglich in der Nähe des "
        "Hauptbahnhofs.</p>"
        "<ul><li>Betreuungszeit: etwa 25 Stunden in der Woche, vormittags</li>"
        "<li>Wir sprechen zu Hause Deutsch und Türkisch</li></ul>"
        "<p>Wie beantragen wir die Förderung, und welche Tagespflegepersonen haben noch "
        "Plätze frei?</p>"
        f"<p>Viele Grüße<br>Ayşe und Murat {YILMAZ}</p>"
        # What webmail services add: a tracking pixel the web app must not load.
        '<img src="https://webmail.example/track/open.gif" width="1" height="1" alt="">'
        "</body></html>\n", subtype="html", cte="quoted-printable")
    return message.as_bytes()


def _report(session: Session, backend: PgpBackend, mailbox: str, *, actor: str,
            now: datetime) -> bytes:
    """The counselling service's report: OpenPGP/MIME, signed and encrypted to the
    mailbox's own key, as its mail client sends it."""
    signer = _counselling_key(session, actor=actor, now=now)
    keys = [k.public for k in list_own_keys(session, mailbox, include_retired=False)
            if k.kind is KeyKind.OPENPGP]
    if not keys:
        raise LookupError(f"{mailbox} has no own OpenPGP key to encrypt the demo report to")
    inner = EmailMessage(policy=policy.SMTP)
    inner.set_content(
        "Sehr geehrte Damen und Herren,\n\n"
        "wie vereinbart erhalten Sie unsere Stellungnahme zum bisherigen Beratungsverlauf "
        "der Familie M. Die Eltern sind mit der Weitergabe einverstanden (schriftliche "
        "Einwilligung vom 12. Januar liegt uns vor).\n\n"
        "Aus unserer Sicht ist eine Betreuung von Jonas in der Kindertagespflege ab dem "
        "Frühjahr gut möglich und für die Familie entlastend. Einzelheiten finden Sie in "
        "der Anlage.\n\n"
        "Mit freundlichen Grüßen\n"
        "Dr. Katrin Vogt\n"
        "Erziehungsberatungsstelle Sonnenberg\n", cte="quoted-printable")
    inner.add_attachment(
        "Stellungnahme zum Beratungsverlauf, Familie M.\n\n"
        "Beratungsanlass: Unterstützung bei der Rückkehr der Mutter in den Beruf.\n"
        "Verlauf: fünf Gespräche seit Oktober; die Eltern arbeiten zuverlässig mit.\n"
        "Empfehlung: Betreuung in der Kindertagespflege, 20 bis 25 Stunden in der Woche.\n",
        filename="Stellungnahme_Familie_M.txt", cte="quoted-printable")
    sealed = seal_pgp_mime(inner.as_bytes(), backend, keys[:1], signer)
    outer = _headers([
        ("From", f"Erziehungsberatungsstelle Sonnenberg <{COUNSELLING}>"),
        ("To", f"Kindertagespflege <{mailbox}>"),
        ("Subject", SUBJECT_REPORT),
        ("Date", format_datetime(now)),
        ("Message-ID", make_msgid(domain="eb-sonnenberg.example")),
        ("MIME-Version", "1.0"),
    ])
    return outer + sealed


def _counselling_key(session: Session, *, actor: str, now: datetime) -> bytes:
    """A new signing key of the demo counselling service, its public part approved in the
    key directory; the secret key is used for the one report and then forgotten."""
    if find_partner(session, COUNSELLING_PARTNER) is None:
        add_partner(session, COUNSELLING_PARTNER, actor=actor, now=now,
                    patterns=["eb-sonnenberg.example"],
                    note="demo partner of xgate init --demo")
    secret = generate_key(f"Erziehungsberatungsstelle Sonnenberg <{COUNSELLING}>",
                          algorithm="cv25519", expires=now + timedelta(days=365))
    import_partner_keys(session, public_part(secret), actor=actor, source=KeySource.IMPORT,
                        source_detail="xgate init --demo", partner=COUNSELLING_PARTNER,
                        approve=True, now=now)
    return secret
