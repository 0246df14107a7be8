"""The consent gate in the outbound pipeline: classification, hold with notice, re-check on a
new release, denial after revocation, statutory transfers with four eyes, hold expiry.

The relay is the recording transport here; tests/test_smtp_consent_e2e.py runs the same
story through the real SMTP listeners and a real SMTP sink.
"""

from __future__ import annotations

import base64
import json
import quopri
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from gateway.clock import FakeClock
from gateway.consent.actions import record_change, record_release, record_revocation
from gateway.consent.errors import ConsentConflict, ConsentError
from gateway.consent.holds import HoldExpiry, approve_statutory
from gateway.consent.records import ReleaseInput
from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport, TransportError
from gateway.keydir.partners import add_partner
from gateway.mime.entity import header_value
from gateway.models import AuditEntry, Direction, HoldKind, MessageState
from gateway.pipeline.driver import run_pipeline
from gateway.pipeline.pipelines import stages_for
from gateway.pipeline.worker import Worker
from gateway.policy.consent import RecipientRef, local_date, normalise_case
from gateway.queue.store import claim_next
from gateway.services import Services
from gateway.settings import OutboundPolicy, RelayRoute
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from tests.support.pipeline import bounces, drain, enqueue, load_message

STAFF = "sb@jugendamt.example"
COLLEAGUE = "leitung@jugendamt.example"
PARTNER = "team@beratung.example"
OTHER = "x@elsewhere.example"
CASE = "51.2-1234/2026"


@pytest.fixture
def office(services: Services) -> Services:
    """An office: its own domain is internal, everything else is relayed outside."""
    services.settings.delivery.routes = [
        RelayRoute(domain="jugendamt.example", host="internal.invalid", internal=True),
        RelayRoute(domain="*", host="relay.invalid")]
    with session_scope(services.sessions) as s:
        add_user(s, "sb", "secret-password-1", addresses=[STAFF])
        add_user(s, "leitung", "secret-password-2", addresses=[COLLEAGUE])
        add_partner(s, "Beratungsstelle Nord", actor="test", now=services.clock(),
                    patterns=["beratung.example"], outbound_policy=OutboundPolicy.PLAINTEXT,
                    non_sensitive=True)
    return services


def report(subject: str = f"[AZ {CASE}][Gutachten] Bericht zu L.", *,
           headers: dict[str, str] | None = None, to: str = PARTNER) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"From: {STAFF}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nDas Gutachten.\r\n").encode()


def release(services: Services, *, case: str = CASE,
            categories: tuple[str, ...] = ("psychologisches Gutachten",),
            recipients: tuple[RecipientRef, ...] = (RecipientRef("partner",
                                                                 "Beratungsstelle Nord"),),
            days: int = 30) -> int:
    today = local_date(services.clock())
    data = ReleaseInput(case=case, data_subjects=("L. M.",), grantor_name="A. M.",
                        grantor_role="parent", categories=categories, recipients=recipients,
                        purpose="Beratung", valid_from=today - timedelta(days=1),
                        valid_until=today + timedelta(days=days))
    with session_scope(services.sessions) as s:
        recorded = record_release(s, services.master_key, services.settings, data,
                                  document=None, actor="sb", now=services.clock())
        return recorded.version.release.id


def send(services: Services, raw: bytes, to: str = PARTNER) -> str:
    return enqueue(services, [to], raw, mail_from=STAFF, direction=Direction.OUTBOUND)


def facts(services: Services, queue_id: str) -> dict[str, str]:
    message = load_message(services, queue_id)
    loaded: dict[str, str] = json.loads(message.facts or "{}")
    return loaded


def text_of(data: bytes) -> str:
    """The readable text of a notice (they are quoted-printable on the wire)."""
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def notices_to(services: Services, address: str) -> list[str]:
    return [m.queue_id for m in bounces(services)
            if [r.address for r in m.recipients] == [address]]


def test_report_without_release_is_held_and_the_sender_told(
        office: Services, transport: RecordingTransport) -> None:
    qid = send(office, report())
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason == (f"consent: {PARTNER}: no release for case {CASE}")
    assert (message.hold_kind, message.case_reference) == (HoldKind.CONSENT,
                                                           normalise_case(CASE))
    assert transport.sent == [(  # only the notice to the sender went anywhere
        "internal.invalid", "", (STAFF,), transport.sent[0][3])]
    notice = text_of(transport.sent[0][3])
    assert f"no release for case {CASE}" in notice
    assert qid in notice
    assert facts(office, qid)["consent:verdict"] == "hold"


def test_registering_a_release_sends_the_held_report_at_once(
        office: Services, transport: RecordingTransport) -> None:
    qid = send(office, report())
    drain(office)
    release_id = release(office)
    assert load_message(office, qid).state == MessageState.DEFERRED
    assert load_message(office, qid).hold_kind is None
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.DELIVERED
    sent = [data for host, _, rcpts, data in transport.sent if rcpts == (PARTNER,)]
    assert len(sent) == 1
    # The subject tag is the office's filing note: removed before the report leaves.
    assert header_value(sent[0], "Subject") == "Bericht zu L."
    recorded = facts(office, qid)
    assert recorded["consent:verdict"] == "allow"
    assert recorded["consent:releases"] == f"{release_id} v1"
    assert recorded["consent:source"] == "subject tag"
    with session_scope(office.sessions) as s:
        delivered = s.scalars(select(AuditEntry).where(AuditEntry.queue_id == qid,
                                                       AuditEntry.action == "delivered")
                              .order_by(AuditEntry.seq.desc())).first()
        assert delivered is not None
        assert json.loads(delivered.detail)["consent:releases"] == f"{release_id} v1"


def test_a_release_for_another_case_wakes_nothing(office: Services) -> None:
    qid = send(office, report())
    drain(office)
    release(office, case="51.2-9999/2026")
    assert load_message(office, qid).state == MessageState.HELD


def test_headers_classify_and_are_not_passed_on(office: Services,
                                               transport: RecordingTransport) -> None:
    release(office, categories=("ärztlicher Bericht",),
            recipients=(RecipientRef("address", OTHER),))
    raw = report("Arztbericht", to=OTHER, headers={
        "X-Xgate-Case": CASE, "X-Xgate-Category": "=?utf-8?q?=C3=A4rztlicher_Bericht?="})
    qid = send(office, raw, to=OTHER)
    drain(office)
    assert load_message(office, qid).state == MessageState.DELIVERED
    sent = transport.sent[-1][3]
    assert b"X-Xgate-Case" not in sent and b"X-Xgate-Category" not in sent
    assert facts(office, qid)["consent:category"] == "ärztlicher Bericht"


def test_other_category_or_recipient_is_held_with_the_missing_part(
        office: Services) -> None:
    release(office, categories=("Hilfeplan",))
    qid = send(office, report())
    other = send(office, report(f"[AZ {CASE}][Hilfeplan] Plan", to=OTHER), to=OTHER)
    drain(office)
    assert load_message(office, qid).reason == (
        f"consent: {PARTNER}: the releases for case {CASE} do not cover category "
        "psychologisches Gutachten")
    assert load_message(office, other).reason == (
        f"consent: {OTHER}: the releases for case {CASE} do not cover recipient {OTHER}")


def test_sensitive_mailbox_without_case_is_held(office: Services) -> None:
    with session_scope(office.sessions) as s:
        add_mailbox(s, STAFF, "Sachbearbeitung", sensitive=True)
    qid = send(office, report("Kurze Frage"))
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None and "no case reference" in message.reason


def test_plain_mail_and_internal_reports_pass_ungated(office: Services,
                                                     transport: RecordingTransport) -> None:
    plain = send(office, report("Terminabsprache"))
    internal = send(office, report(), to=COLLEAGUE)
    drain(office)
    assert load_message(office, plain).state == MessageState.DELIVERED
    assert load_message(office, internal).state == MessageState.DELIVERED
    to_colleague = [d for _, _, r, d in transport.sent if r == (COLLEAGUE,)]
    # Inside the office the tag stays: it is how colleagues file the report.
    assert header_value(to_colleague[0], "Subject") == f"[AZ {CASE}][Gutachten] Bericht zu L."


def test_revoked_release_denies_and_bounces(office: Services) -> None:
    release_id = release(office)
    with session_scope(office.sessions) as s:
        record_revocation(s, office.master_key, release_id, actor="sb",
                          reason="Widerruf per Brief", now=office.clock())
    qid = send(office, report())
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.REJECTED
    assert message.reason is not None and "was revoked" in message.reason
    assert notices_to(office, STAFF)  # the DSN


def test_revocation_stops_a_report_waiting_for_a_retry(
        office: Services, transport: RecordingTransport) -> None:
    release_id = release(office)
    transport.error = TransportError("connection refused", permanent=False)
    qid = send(office, report())
    drain(office)
    assert load_message(office, qid).state == MessageState.DEFERRED
    transport.error = None
    with session_scope(office.sessions) as s:
        rechecked = record_revocation(s, office.master_key, release_id, actor="sb",
                                      reason="Widerruf", now=office.clock()).rechecked
    assert rechecked == (qid,)
    drain(office)
    assert load_message(office, qid).state == MessageState.REJECTED
    assert not [r for _, _, r, _ in transport.sent if r == (PARTNER,)]


def test_a_change_after_the_check_is_caught_before_sending(office: Services,
                                                          transport: RecordingTransport
                                                          ) -> None:
    """The race: the release is revoked while the report is between gate and relay."""
    release_id = release(office)
    qid = send(office, report())
    stages = stages_for(Direction.OUTBOUND)
    deliver = stages.index(next(s for s in stages if s.name == "deliver"))
    worker = Worker(office, "w-race")
    with session_scope(office.sessions) as s:
        claim = claim_next(s, "w-race", office.clock(), 60)
    assert claim is not None
    ctx = worker._load(claim)
    assert ctx is not None
    result = run_pipeline(ctx, stages[:deliver], office)
    assert result.outcome is None
    with session_scope(office.sessions) as s:
        record_revocation(s, office.master_key, release_id, actor="sb", reason="Widerruf",
                          now=office.clock())
    result = run_pipeline(ctx, stages[deliver:], office)
    assert result.state == MessageState.DEFERRED
    assert not [r for _, _, r, _ in transport.sent if r == (PARTNER,)]
    worker._finish(claim, ctx, result)
    drain(office)
    assert load_message(office, qid).state == MessageState.REJECTED


def test_a_narrowed_release_holds_what_it_no_longer_covers(office: Services) -> None:
    release_id = release(office, categories=("psychologisches Gutachten", "Hilfeplan"))
    today = local_date(office.clock())
    with session_scope(office.sessions) as s:
        record_change(s, office.master_key, office.settings, release_id, ReleaseInput(
            case=CASE, data_subjects=("L. M.",), grantor_name="A. M.", grantor_role="parent",
            categories=("Hilfeplan",), recipients=(RecipientRef("partner",
                                                                "Beratungsstelle Nord"),),
            purpose="Beratung", valid_from=today, valid_until=today + timedelta(days=3),
            note="Mutter schränkt ein"), document=None, actor="sb", now=office.clock())
    qid = send(office, report())
    drain(office)
    assert load_message(office, qid).state == MessageState.HELD


STATUTORY = {"X-Xgate-Case": CASE, "X-Xgate-Category": "Stellungnahme",
             "X-Xgate-Legal-Basis": "§8a SGB VIII",
             "X-Xgate-Justification": "akute Gefährdung, Inobhutnahme"}


def test_statutory_transfer_needs_a_second_person(office: Services,
                                                 transport: RecordingTransport) -> None:
    office.settings.consent.approvers = [COLLEAGUE]
    qid = send(office, report("Meldung", headers=STATUTORY))
    drain(office)
    [request] = [d for _, _, r, d in transport.sent if r == (COLLEAGUE,)]
    assert f"xgate consent approve {qid}" in text_of(request)
    assert "akute Gefährdung" in text_of(request)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None
    assert message.reason.startswith("consent: statutory transfer on § 8a SGB VIII")
    assert message.hold_kind == HoldKind.STATUTORY_APPROVAL
    with session_scope(office.sessions) as s, pytest.raises(ConsentError, match="sent this"):
        approve_statutory(s, qid, approver="sb", reason="ich selbst", now=office.clock())
    assert not [r for _, _, r, _ in transport.sent if r == (PARTNER,)]
    with session_scope(office.sessions) as s:
        approve_statutory(s, qid, approver="leitung", reason="Gefährdung bestätigt",
                          now=office.clock())
    drain(office)
    assert load_message(office, qid).state == MessageState.DELIVERED
    recorded = facts(office, qid)
    assert recorded["consent:verdict"] == "statutory"
    assert recorded["consent:legal_basis"] == "§ 8a SGB VIII"
    with session_scope(office.sessions) as s, pytest.raises(ConsentConflict):
        approve_statutory(s, qid, approver="leitung", reason="noch mal", now=office.clock())


def test_statutory_transfer_without_justification_cannot_be_approved(
        office: Services) -> None:
    headers = {k: v for k, v in STATUTORY.items() if k != "X-Xgate-Justification"}
    qid = send(office, report("Meldung", headers=headers))
    drain(office)
    with session_scope(office.sessions) as s, pytest.raises(
            ConsentError, match=r"no justification \(X-Xgate-Justification\)"):
        approve_statutory(s, qid, approver="leitung", reason="ok", now=office.clock())
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None and "a justification is required" in message.reason


def test_unknown_legal_basis_is_held(office: Services) -> None:
    headers = {**STATUTORY, "X-Xgate-Legal-Basis": "weil ich es sage"}
    qid = send(office, report("Meldung", headers=headers))
    drain(office)
    message = load_message(office, qid)
    assert message.reason is not None and "unknown legal basis" in message.reason


def test_held_reports_expire_with_a_notice(office: Services, clock: FakeClock) -> None:
    qid = send(office, report())
    drain(office)
    sweeper = HoldExpiry(office.settings, office.sessions, office.master_key, clock)
    clock.now += timedelta(days=office.settings.consent.hold_expiry_days - 1)
    assert sweeper.sweep_once() == []
    clock.now += timedelta(days=1)
    assert sweeper.sweep_once() == [qid]
    message = load_message(office, qid)
    assert message.state == MessageState.REJECTED
    assert message.reason is not None and "without a covering release" in message.reason
    assert message.hold_kind is None and message.case_reference == normalise_case(CASE)
    assert len(notices_to(office, STAFF)) == 2  # "held" first, then the DSN
    assert sweeper.sweep_once() == []


def test_release_valid_until_today_covers_today_only(office: Services,
                                                    clock: FakeClock) -> None:
    release(office, days=0)
    first = send(office, report())
    drain(office)
    assert load_message(office, first).state == MessageState.DELIVERED
    clock.now += timedelta(days=1)
    second = send(office, report())
    drain(office)
    assert load_message(office, second).state == MessageState.REJECTED  # expired: deny


# -- a report without tag or fields, recognised by the case it names --------------------------

UNTAGGED = f"Psychologisches Gutachten zu L. M. (AZ {CASE})"


def raw_mail(subject: str, body: bytes, *, encoding: str = "8bit") -> bytes:
    return (f"From: {STAFF}\r\nTo: {PARTNER}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body


def test_untagged_report_of_a_revoked_case_is_held(office: Services,
                                                   transport: RecordingTransport) -> None:
    release_id = release(office)
    with session_scope(office.sessions) as s:
        record_revocation(s, office.master_key, release_id, actor="sb",
                          reason="Widerruf per Brief", now=office.clock())
    qid = send(office, report(UNTAGGED))
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason == (
        f"consent: names case {CASE} known to the consent register, but no category: tag "
        f"the subject [AZ {CASE}][Gutachten] (with its category) or give X-Xgate-Case and "
        "X-Xgate-Category")
    recorded = facts(office, qid)
    assert recorded["consent:source"] == "case reference in the text"
    assert recorded["consent:case"] == CASE
    assert not [d for _, _, r, d in transport.sent if r == (PARTNER,)]
    [notice] = [d for _, _, r, d in transport.sent if r == (STAFF,)]
    assert f"names case {CASE} known to the consent register" in text_of(notice)


def test_untagged_mail_naming_a_case_not_in_the_register_passes(
        office: Services, transport: RecordingTransport) -> None:
    release(office)  # the register knows CASE, not the one named
    qid = send(office, report("Psychologisches Gutachten zu K. (AZ 51.2-9999/2026)"))
    drain(office)
    assert load_message(office, qid).state == MessageState.DELIVERED
    assert "consent:verdict" not in facts(office, qid)
    assert [d for _, _, r, d in transport.sent if r == (PARTNER,)]


@pytest.mark.parametrize("encoding", ["8bit", "base64", "quoted-printable"])
def test_a_case_named_only_in_the_text_holds(office: Services, encoding: str) -> None:
    release(office)
    text = f"Sehr geehrte Frau K.,\r\nanbei das Gutachten zum Aktenzeichen {CASE}.\r\n"
    body = {"8bit": text.encode(),
            "base64": base64.encodebytes(text.encode()),
            "quoted-printable": quopri.encodestring(text.encode())}[encoding]
    qid = send(office, raw_mail("Unterlagen", body, encoding=encoding))
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None and f"names case {CASE}" in message.reason


def test_a_report_naming_two_known_cases_names_both(office: Services) -> None:
    other = "51.2-7777/2026"
    release(office)
    release(office, case=other)
    qid = send(office, raw_mail(f"Gutachten (AZ {other})", f"Siehe auch {CASE}.\r\n".encode()))
    drain(office)
    message = load_message(office, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None
    assert f"names cases {other}, {CASE} known to the consent register" in message.reason


def test_a_tagged_report_is_judged_by_its_tag_not_by_the_text(office: Services) -> None:
    release(office)
    qid = send(office, report(f"[AZ {CASE}][Gutachten] zu L. (früher AZ 51.2-1/2020)"))
    drain(office)
    assert load_message(office, qid).state == MessageState.DELIVERED


def test_the_text_is_searched_only_as_far_as_configured(office: Services) -> None:
    release(office)
    office.settings.consent.case_reference_scan_bytes = 1024
    filler = b"Text ohne Aktenzeichen.\r\n" * 100  # 2500 bytes
    late = send(office, raw_mail("Unterlagen", filler + f"AZ {CASE}\r\n".encode()))
    early = send(office, raw_mail("Unterlagen", f"AZ {CASE}\r\n".encode() + filler))
    drain(office)
    assert load_message(office, late).state == MessageState.DELIVERED
    assert load_message(office, early).state == MessageState.HELD
