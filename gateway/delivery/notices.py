"""What the gateway's notices say: German first, the same in English below.

The people who read them are a German office's staff and its partners; the English half is
for partners and readers who need it. Each text says only what is true: who was told, what
happens next. A reason that a stage wrote only in English appears as it is in both halves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

ENGLISH_SEPARATOR = "--- English ---"


@dataclass(frozen=True)
class Bilingual:
    de: str
    en: str

    def render(self) -> str:
        return f"{self.de.strip()}\n\n{ENGLISH_SEPARATOR}\n\n{self.en.strip()}\n"


# A stage's reason or notice: in both languages, or one string for both halves.
Text = str | Bilingual


def both(text: Text) -> Bilingual:
    return text if isinstance(text, Bilingual) else Bilingual(text, text)


@dataclass(frozen=True)
class Notice:
    subject: str
    text: str


def to_sender(*, queue_id: str, recipients: Sequence[str], quarantined: bool, reason: Text,
              recipients_told: bool) -> Notice:
    """A held or quarantined message, told to the one who sent it."""
    why = both(reason)
    rcpts = ", ".join(recipients)
    if quarantined:
        subject = (f"Nachricht in Quarantäne: Referenz {queue_id} / "
                   f"Message quarantined: reference {queue_id}")
        told_de = " Die Empfänger wurden benachrichtigt." if recipients_told else ""
        told_en = " The recipients have been told." if recipients_told else ""
        de = (f"Ihre Nachricht an {rcpts} (Referenz {queue_id}) wurde vom Mail-Gateway in "
              f"Quarantäne genommen und nicht zugestellt.\n\nGrund: {why.de}\n\n"
              "Sie bleibt verschlüsselt gespeichert, bis die Administratoren des Gateways sie "
              f"freigeben oder löschen.{told_de} Bitte geben Sie bei Rückfragen die Referenz "
              "an.")
        en = (f"Your message to {rcpts} (reference {queue_id}) has been quarantined by the "
              f"mail gateway and has not been delivered.\n\nReason: {why.en}\n\n"
              "It is kept, encrypted, until the gateway's administrators release or delete "
              f"it.{told_en} Please quote the reference in any enquiry.")
    else:
        subject = (f"Nachricht zurückgehalten: Referenz {queue_id} / "
                   f"Message held: reference {queue_id}")
        de = (f"Ihre Nachricht an {rcpts} (Referenz {queue_id}) wurde vom Mail-Gateway "
              f"zurückgehalten und noch nicht zugestellt.\n\nGrund: {why.de}\n\n"
              "Bitte geben Sie bei Rückfragen die Referenz an.")
        en = (f"Your message to {rcpts} (reference {queue_id}) has been held by the mail "
              f"gateway and has not been delivered yet.\n\nReason: {why.en}\n\n"
              "Please quote the reference in any enquiry.")
    return Notice(subject, Bilingual(de, en).render())


def to_quarantined_recipient(*, queue_id: str, sender: str, recipient: str,
                             reason: str) -> Notice:
    """The office's own recipient of a quarantined message: what was kept from them, and why
    (they are inside, so the full reason is theirs to see)."""
    shown = sender or "<>"
    told_de = ("Der Absender wurde benachrichtigt." if sender else
               "Der Absender ist leer (eine automatische Nachricht); niemand sonst wurde "
               "benachrichtigt.")
    told_en = ("The sender has been told." if sender else
               "The sender is empty (an automatic message); nobody else has been told.")
    de = (f"Eine Nachricht von {shown} an {recipient} (Referenz {queue_id}) wurde vom "
          f"Mail-Gateway in Quarantäne genommen und nicht zugestellt.\n\nGrund: {reason}\n\n"
          "Die Administratoren können sie freigeben (zwei verschiedene müssen zustimmen, und "
          f"sie wird vorher erneut geprüft) oder löschen. {told_de}")
    en = (f"A message from {shown} to {recipient} (reference {queue_id}) was quarantined by "
          f"the mail gateway and has not been delivered.\n\nReason: {reason}\n\n"
          "The administrators can release it (two different ones must agree, after a fresh "
          f"scan) or delete it. {told_en}")
    return Notice(f"Quarantäne für Sie: Referenz {queue_id} / "
                  f"Quarantined for you: reference {queue_id}", Bilingual(de, en).render())


def portal_receipt(*, reference: str, received: datetime, files: int) -> Notice:
    """The receipt of a citizen portal submission, to the address the citizen gave. It names
    no content (neither topic nor text nor file names): the address was not checked, and
    mail leaves the gateway unencrypted to it."""
    when_de = received.strftime("%d.%m.%Y um %H:%M Uhr")
    when_en = received.strftime("%Y-%m-%d at %H:%M")
    subject = (f"Eingangsbestätigung: Referenz {reference} / "
               f"Acknowledgement of receipt: reference {reference}")
    de = (f"Ihre Nachricht über das Bürgerportal ist am {when_de} eingegangen "
          f"(Referenz {reference}, {files} Datei(en)).\n\n"
          "Aus Datenschutzgründen enthält diese E-Mail keinen Inhalt Ihrer Nachricht. Bitte "
          "geben Sie bei Rückfragen die Referenz an. Wenn Sie nichts über das Bürgerportal "
          "gesendet haben, können Sie diese E-Mail ignorieren.")
    en = (f"Your message through the citizen portal was received on {when_en} "
          f"(reference {reference}, {files} file(s)).\n\n"
          "For your privacy this e-mail contains nothing of your message. Please quote the "
          "reference in any enquiry. If you sent nothing through the citizen portal, you can "
          "ignore this e-mail.")
    return Notice(subject, Bilingual(de, en).render())


def portal_pickup(*, link: str, valid_until: datetime, code_by_sms: bool) -> Notice:
    """A reply waiting in the citizen portal, told to the citizen. It names no content
    (neither subject nor text nor file names nor the team): it leaves the gateway
    unencrypted. The link alone does not open it: the code comes on another channel."""
    until_de = valid_until.strftime("%d.%m.%Y")
    until_en = valid_until.strftime("%Y-%m-%d")
    code_de = ("Den Code zum Öffnen bekommen Sie per SMS." if code_by_sms else
               "Den Code zum Öffnen bekommen Sie auf anderem Weg: von Ihrer Sachbearbeitung "
               "am Telefon oder per Brief.")
    code_en = ("You get the code to open it by text message (SMS)." if code_by_sms else
               "You get the code to open it another way: from your caseworker by phone or "
               "by letter.")
    de = ("Für Sie liegt eine Nachricht im Bürgerportal bereit.\n\n"
          f"Sie können sie bis zum {until_de} hier abholen:\n{link}\n\n"
          f"{code_de} Mit dem Link allein kann niemand die Nachricht öffnen.\n\n"
          "Aus Datenschutzgründen steht in dieser E-Mail nichts vom Inhalt der Nachricht. "
          "Antworten Sie bitte nicht auf diese E-Mail; Sie können im Bürgerportal antworten.")
    en = ("A message is waiting for you in the citizen portal.\n\n"
          f"You can pick it up here until {until_en}:\n{link}\n\n"
          f"{code_en} The link alone does not open the message.\n\n"
          "For your privacy this e-mail contains nothing of the message. Please do not "
          "reply to this e-mail; you can answer in the citizen portal.")
    return Notice("Nachricht für Sie im Bürgerportal / A message for you in the citizen "
                  "portal", Bilingual(de, en).render())


def approval_request(*, queue_id: str, text: Text) -> Notice:
    return Notice(f"Zustimmung nötig: Referenz {queue_id} / "
                  f"Approval needed: reference {queue_id}", both(text).render())


def dsn_text(*, reporting_mta: str, queue_id: str, failures: Sequence[tuple[str, str]]
             ) -> list[str]:
    """The human-readable part of a DSN, as lines; ``failures`` are (recipient, diagnostic)."""
    listed = [f"  {recipient}: {diagnostic}" for recipient, diagnostic in failures]
    return [
        f"Dies ist das Mail-Gateway {reporting_mta}.",
        "",
        "Ihre Nachricht konnte an die folgenden Empfänger nicht zugestellt werden:",
        "",
        *listed,
        "",
        f"Referenz: {queue_id}",
        "",
        ENGLISH_SEPARATOR,
        "",
        f"This is the mail gateway at {reporting_mta}.",
        "",
        "Your message could not be delivered to the following recipients:",
        "",
        *listed,
        "",
        f"Reference: {queue_id}",
    ]
