"""Service levels on a real database (SQLite and PostgreSQL): configuration and its refusals,
deadlines from the history with the clock paused while waiting, marks, escalation once by the
scheduler (in the app, the audit trail and by mail), plausibility findings, and the scheduler
running each due job once with two workers."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select, update

from gateway.audit.view import opened as opened_audit
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, Message
from gateway.services import Services
from gateway.staff.users import add_address
from mailboxes.hotline.calls import CallForm, log_call
from mailboxes.models import Mailbox
from mailboxes.scheduler.jobs import Job, JobContext
from mailboxes.scheduler.models import ScheduledJob
from mailboxes.scheduler.runner import Scheduler
from mailboxes.service_levels import config
from mailboxes.service_levels import jobs as service_level_jobs
from mailboxes.service_levels.business_hours import OFFICE_TIME
from mailboxes.service_levels.config import ServiceLevelError, ServiceLevelForm
from mailboxes.service_levels.deadlines import Event, deadlines
from mailboxes.service_levels.models import (
    Escalation,
    Finding,
    MailboxServiceLevel,
    TicketServiceLevel,
)
from mailboxes.tickets.models import Ticket, TicketState
from mailboxes.tickets.records import change_state, create_ticket, get_ticket
from mailboxes.tickets.replies import Reply, submit_reply
from tests.support.ticket_web import BOX, OTHER_BOX, two_teams


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=OFFICE_TIME).astimezone(UTC)


def form(**changes: str) -> ServiceLevelForm:
    f = config.default_form()
    f.first_response_hours, f.resolution_hours, f.warning_hours = "4", "14", "1"
    for name, value in changes.items():
        setattr(f, name, value)
    return f


LEVELS = config.parse_form(form())


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "key"), [
    ({"hours": {"mon": "08:00-12:00, 11:00-14:00"}}, "overlap"),
    ({"hours": {"mon": "12:00-08:00"}}, "end_before_start"),
    ({"hours": {"mon": "8 bis 12"}}, "interval"),
    ({"hours": {"mon": "08:00-25:00"}}, "time"),
    ({"hours": {"xyz": "08:00-12:00"}}, "weekday"),
    ({"hours": {}}, "never_open"),
    ({"first_response_hours": "0"}, "positive"),
    ({"resolution_hours": "-3"}, "positive"),
    ({"warning_hours": "viel"}, "number"),
    ({"resolution_hours": "2"}, "resolution_before_first"),
    ({"land": "XX"}, "land"),
    ({"closing_days": "24.12.2026"}, "date"),
    ({"untouched_days": "0"}, "positive"),
    ({"case_reference_patterns": "(unclosed"}, "pattern"),
])
def test_bad_configuration_is_refused_with_its_reason(changes: dict[str, object],
                                                      key: str) -> None:
    f = form()
    for name, value in changes.items():
        setattr(f, name, value)
    with pytest.raises(ServiceLevelError) as refused:
        config.parse_form(f)
    assert refused.value.key == key
    assert str(refused.value)  # the English message for the CLI


def test_the_form_round_trips() -> None:
    f = form(closing_days="2026-12-24, 2026-12-31", escalation_contacts="lena",
             case_reference_patterns=r"AZ-\d+")
    assert config.parse_form(config.to_form(config.parse_form(f))) == config.parse_form(f)


def test_an_unknown_escalation_contact_stores_nothing(services: Services) -> None:
    two_teams(services)
    with pytest.raises(ServiceLevelError, match="not a member"), \
            session_scope(services.sessions) as s:
        box = s.scalars(select(Mailbox).where(Mailbox.address == BOX)).one()
        config.save(s, box, config.parse_form(form(escalation_contacts="bert")),
                    actor="lena", now=services.clock())
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(MailboxServiceLevel)) == 0


# -- deadlines from the history (pure) ---------------------------------------------------------

def test_deadlines_pause_while_waiting_and_a_reply_is_the_first_response() -> None:
    created = local("2026-11-23 09:00")      # Monday
    plain = deadlines(created, [Event(created, "created")], LEVELS)
    assert plain.first_response_due_at == local("2026-11-23 14:00")
    waiting = [Event(created, "created"), Event(local("2026-11-23 10:00"), "state", "waiting")]
    assert deadlines(created, waiting, LEVELS).first_response_due_at is None
    resumed = [*waiting, Event(local("2026-11-24 10:00"), "state", "open")]
    d = deadlines(created, resumed, LEVELS)
    # 1h on Monday, Tuesday 10-12 and 13-14.
    assert d.first_response_due_at == local("2026-11-24 14:00")
    assert d.paused_since is None
    replied = [*resumed, Event(local("2026-11-24 11:00"), "reply")]
    assert deadlines(created, replied, LEVELS).first_responded_at == local("2026-11-24 11:00")
    closed = [*replied, Event(local("2026-11-24 12:00"), "state", "closed")]
    assert deadlines(created, closed, LEVELS).resolved_at == local("2026-11-24 12:00")
    reopened = [*closed, Event(local("2026-11-24 12:30"), "state", "open")]
    assert deadlines(created, reopened, LEVELS).resolved_at is None
    # A call on the hotline was answered in the call.
    call = deadlines(created, [Event(created, "created")], LEVELS, answered_at_creation=True)
    assert call.first_responded_at == created


# -- the SLA pass through the scheduler ---------------------------------------------------------

def configured(services: Services, clock: FakeClock, **changes: str) -> int:
    two_teams(services)
    clock.now = local("2026-11-23 09:00")
    with session_scope(services.sessions) as s:
        add_address(s, "lena", "lena@jugendamt.example")
        box = s.scalars(select(Mailbox).where(Mailbox.address == BOX)).one()
        config.save(s, box, config.parse_form(form(**changes)), actor="lena", now=clock())
        return box.id


def new_ticket(services: Services, box_id: int, requester: str = "eltern@web.example") -> int:
    with session_scope(services.sessions) as s:
        tid, _ = create_ticket(s, services.master_key, mailbox_id=box_id, requester=requester,
                               subject="Frage", actor=requester, now=services.clock())
        return tid


def scheduler(services: Services, owner: str = "worker:test:1:scheduler") -> Scheduler:
    return Scheduler(services.settings, services.sessions, services.master_key,
                     services.clock, owner=owner, jobs=service_level_jobs.JOBS)


def level(services: Services, tid: int) -> TicketServiceLevel:
    with read_scope(services.sessions) as s:
        row = s.get(TicketServiceLevel, tid)
        assert row is not None
        s.expunge(row)
        return row


def escalation_mails(services: Services) -> list[list[str]]:
    """The recipients of each of the gateway's own notices in the queue."""
    with read_scope(services.sessions) as s:
        return [[r.address for r in m.recipients]
                for m in s.scalars(select(Message).where(Message.mail_from == ""))]


def test_nearing_then_breached_is_escalated_once(services: Services, clock: FakeClock) -> None:
    box = configured(services, clock)
    tid = new_ticket(services, box)
    run = scheduler(services)
    clock.now = local("2026-11-23 10:00")
    assert run.tick() == ["sla-pass", "plausibility-pass"]
    assert level(services, tid).first_response_due_at == local("2026-11-23 14:00")
    assert level(services, tid).mark is None
    clock.now = local("2026-11-23 13:30")
    run.tick()
    assert level(services, tid).mark == "nearing"
    clock.now = local("2026-11-23 14:30")
    run.tick()
    assert level(services, tid).mark == "breached"
    with read_scope(services.sessions) as s:
        (escalation,) = s.scalars(select(Escalation)).all()
        assert (escalation.ticket_id, escalation.kind) == (tid, "first_response")
        assert json.loads(escalation.told) == ["lena"]
        (entry,) = opened_audit(s, s.scalars(select(AuditEntry).where(
            AuditEntry.action == "sla-escalated")).all())
    assert entry.details["told"] == ["lena"] and entry.details["kind"] == "first_response"
    assert escalation_mails(services) == [["lena@jugendamt.example"]]
    # Later passes find it escalated already.
    clock.now = local("2026-11-23 15:30")
    run.tick()
    clock.now = local("2026-11-23 16:30")
    run.tick()
    assert len(escalation_mails(services)) == 1


def test_waiting_stops_the_clock_and_a_reply_answers(services: Services,
                                                     clock: FakeClock) -> None:
    box = configured(services, clock)
    waiting, answered = new_ticket(services, box), new_ticket(services, box, "b@web.example")
    clock.now = local("2026-11-23 10:00")
    with session_scope(services.sessions) as s:
        change_state(s, get_ticket(s, waiting), TicketState.WAITING, actor="anna", now=clock())
        submit_reply(s, services.master_key, Reply(ticket_id=answered, text="Guten Tag"),
                     username="anna", hostname="gw.example", max_bytes=10**6, now=clock())
    run = scheduler(services)
    run.tick()
    assert level(services, waiting).paused_since == local("2026-11-23 10:00")
    assert level(services, waiting).first_response_due_at is None
    assert level(services, answered).first_responded_at == local("2026-11-23 10:00")
    clock.now = local("2026-11-24 10:00")
    with session_scope(services.sessions) as s:
        change_state(s, get_ticket(s, waiting), TicketState.OPEN, actor="anna", now=clock())
    clock.now = local("2026-11-24 10:06")
    run.tick()
    assert level(services, waiting).first_response_due_at == local("2026-11-24 14:00")
    assert level(services, waiting).paused_since is None
    assert level(services, waiting).mark is None
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Escalation)) == 0


def test_changing_the_hours_recomputes_the_deadlines(services: Services,
                                                     clock: FakeClock) -> None:
    box = configured(services, clock)
    tid = new_ticket(services, box)
    run = scheduler(services)
    run.tick()
    with session_scope(services.sessions) as s:
        mailbox = s.get(Mailbox, box)
        assert mailbox is not None
        config.save(s, mailbox, config.parse_form(form(first_response_hours="1")),
                    actor="lena", now=clock())
    clock.now = local("2026-11-23 09:06")
    run.tick()
    assert level(services, tid).first_response_due_at == local("2026-11-23 10:00")


# -- plausibility -------------------------------------------------------------------------------

def open_findings(services: Services) -> set[tuple[int, str]]:
    with read_scope(services.sessions) as s:
        return {(tid, rule) for tid, rule in s.execute(
            select(Finding.ticket_id, Finding.rule).where(Finding.resolved_at.is_(None)))}


def test_a_callback_without_a_number_is_pointed_out(services: Services,
                                                     clock: FakeClock) -> None:
    box_id = configured(services, clock)
    with session_scope(services.sessions) as s:
        box = s.get(Mailbox, box_id)
        assert box is not None
        silent = log_call(s, services.master_key, box,
                          CallForm(caller="Eine Mutter", role="parent", number="",
                                   callback_due=clock() + timedelta(hours=2)),
                          actor="anna", now=clock())
        reachable = log_call(s, services.master_key, box,
                             CallForm(caller="Ein Vater", role="parent", number="0221 12345",
                                      callback_due=clock() + timedelta(hours=2)),
                             actor="anna", now=clock())
    scheduler(services).tick()
    findings = open_findings(services)
    assert (silent.ticket_id, "callback-without-number") in findings
    assert (reachable.ticket_id, "callback-without-number") not in findings


def test_plausibility_findings_come_and_go(services: Services, clock: FakeClock) -> None:
    box = configured(services, clock, untouched_days="3")
    closed, quiet = new_ticket(services, box), new_ticket(services, box, "b@web.example")
    one, two = new_ticket(services, box, "c@web.example"), new_ticket(services, box,
                                                                      "d@web.example")
    with session_scope(services.sessions) as s:
        change_state(s, get_ticket(s, closed), TicketState.CLOSED, actor="anna", now=clock())
        for tid in (one, two):
            sent = submit_reply(s, services.master_key, Reply(ticket_id=tid, text="Hallo"),
                                username="anna", hostname="gw.example", max_bytes=10**6,
                                now=clock())
            # What the consent gate stores for a reply naming a case (normalised).
            s.execute(update(Message).where(Message.queue_id == sent.queue_id)
                      .values(case_reference="XYZ/ABC"))
    run = scheduler(services)
    clock.now = local("2026-11-23 09:30")
    run.tick()
    assert open_findings(services) == {
        (closed, "closed-without-reply"),
        (one, "case-reference-format"), (two, "case-reference-format"),
        (one, "case-reference-two-subjects"), (two, "case-reference-two-subjects")}
    clock.now = local("2026-11-27 09:30")
    run.tick()
    assert (quiet, "untouched") in open_findings(services)
    with session_scope(services.sessions) as s:
        change_state(s, get_ticket(s, quiet), TicketState.OPEN, actor="anna", now=clock())
        change_state(s, get_ticket(s, closed), TicketState.OPEN, actor="anna", now=clock())
        submit_reply(s, services.master_key, Reply(ticket_id=closed, text="Antwort"),
                     username="anna", hostname="gw.example", max_bytes=10**6, now=clock())
    clock.now = local("2026-11-27 09:50")
    run.tick()
    found = open_findings(services)
    assert (quiet, "untouched") not in found and (closed, "closed-without-reply") not in found
    with read_scope(services.sessions) as s:
        resolved = s.scalar(select(func.count()).select_from(Finding)
                            .where(Finding.resolved_at.is_not(None)))
    assert resolved == 2


def test_only_configured_mailboxes_are_checked(services: Services, clock: FakeClock) -> None:
    configured(services, clock)
    with read_scope(services.sessions) as s:
        other = s.scalars(select(Mailbox).where(Mailbox.address == OTHER_BOX)).one().id
    tid = new_ticket(services, other)
    with session_scope(services.sessions) as s:
        change_state(s, get_ticket(s, tid), TicketState.CLOSED, actor="bert", now=clock())
    scheduler(services).tick()
    assert open_findings(services) == set()
    with read_scope(services.sessions) as s:
        assert s.get(TicketServiceLevel, tid) is None


# -- the scheduler -----------------------------------------------------------------------------

def test_two_schedulers_run_each_due_job_once(services: Services, clock: FakeClock) -> None:
    runs: list[str] = []

    def count(ctx: JobContext) -> None:
        runs.append(ctx.actor)

    jobs = [Job("count", count, every=timedelta(minutes=5))]
    first = Scheduler(services.settings, services.sessions, services.master_key, clock,
                      owner="w1", jobs=jobs)
    second = Scheduler(services.settings, services.sessions, services.master_key, clock,
                       owner="w2", jobs=jobs)
    assert first.tick() == ["count"] and second.tick() == []
    clock.advance(60)
    assert first.tick() == [] and second.tick() == []
    clock.advance(5 * 60)
    assert second.tick() == ["count"] and first.tick() == []
    assert runs == ["w1", "w2"]


def test_a_failing_job_is_rolled_back_and_tried_again(services: Services,
                                                      clock: FakeClock) -> None:
    calls: list[datetime] = []

    def flaky(ctx: JobContext) -> None:
        calls.append(ctx.now)
        ctx.session.execute(update(ScheduledJob).values(last_run_by="half-done"))
        if len(calls) == 1:
            raise RuntimeError("boom")

    run = Scheduler(services.settings, services.sessions, services.master_key, clock,
                    owner="w1", jobs=[Job("flaky", flaky, every=timedelta(hours=1))])
    assert run.tick() == []
    with read_scope(services.sessions) as s:
        row = s.get(ScheduledJob, "flaky")
        assert row is not None and row.last_run_at is None and row.last_run_by is None
    clock.advance(30)
    assert run.tick() == ["flaky"]
    assert len(calls) == 2


def test_a_daily_job_runs_at_its_office_time(services: Services, clock: FakeClock) -> None:
    runs: list[datetime] = []
    clock.now = local("2026-03-28 06:00")          # the day before the spring DST change
    run = Scheduler(services.settings, services.sessions, services.master_key, clock,
                    owner="w1", jobs=[Job("digest", lambda ctx: runs.append(ctx.now),
                                          daily_at=time(7, 0))])
    run.tick()
    clock.now = local("2026-03-28 07:00")
    run.tick()
    clock.now = local("2026-03-29 06:59")
    run.tick()
    clock.now = local("2026-03-29 07:00")          # 05:00 UTC now, 06:00 UTC the day before
    run.tick()
    assert runs == [local("2026-03-28 07:00"), local("2026-03-29 07:00")]


def test_ticket_count_sanity(services: Services, clock: FakeClock) -> None:
    box = configured(services, clock)
    new_ticket(services, box)
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1


def test_a_running_job_is_skipped_not_waited_for_on_postgresql(
        services: Services, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Two worker processes: while one runs a due job (its row locked), the other's tick
    skips the row (FOR UPDATE SKIP LOCKED) at once instead of running it a second time."""
    if not services.settings.database.url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers with its lock")
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow(ctx: JobContext) -> None:
        runs.append(ctx.actor)
        started.set()
        assert release.wait(30)

    jobs = [Job("slow", slow, every=timedelta(minutes=5))]
    first = Scheduler(services.settings, services.sessions, services.master_key, clock,
                      owner="w1", jobs=jobs)
    second = Scheduler(services.settings, services.sessions, services.master_key, clock,
                       owner="w2", jobs=jobs)
    ran: list[list[str]] = []
    worker = threading.Thread(target=lambda: ran.append(first.tick()))
    worker.start()
    try:
        assert started.wait(30)
        with caplog.at_level(logging.WARNING, logger="mailboxes.scheduler.runner"):
            assert second.tick() == []
        assert not caplog.records   # skipped, not failed on a lock
    finally:
        release.set()
        worker.join(30)
    assert ran == [["slow"]] and runs == ["w1"]


def test_the_escalation_mail_is_german_first_and_names_no_content() -> None:
    from gateway.delivery.notices import ENGLISH_SEPARATOR
    from mailboxes.service_levels.escalation import escalation_notice
    from mailboxes.service_levels.sla_pass import Breach

    box = Mailbox(id=1, address=BOX, name="Kindertagespflege")
    notice = escalation_notice(box, [
        Breach(7, 1, "XG-2026-000007", "first_response", local("2026-11-23 14:00")),
        Breach(8, 1, "XG-2026-000008", "resolution", local("2026-11-24 09:30"))])
    german, english = notice.text.split(ENGLISH_SEPARATOR)
    assert "XG-2026-000007: Erste Antwort fällig seit 23.11.2026 14:00" in german
    assert "XG-2026-000008: resolution due since 24.11.2026 09:30" in english
    assert notice.subject.startswith("Frist überschritten: 2 Vorgang/Vorgänge")
    many = escalation_notice(box, [
        Breach(n, 1, f"XG-2026-{n:06d}", "first_response", local("2026-11-23 14:00"))
        for n in range(1, 121)])
    assert "XG-2026-000050" in many.text and "XG-2026-000051" not in many.text
    assert "... und 70 weitere" in many.text and "... and 70 more" in many.text


def test_a_call_ticket_was_answered_in_the_call(services: Services, clock: FakeClock) -> None:
    box = configured(services, clock)
    tid = new_ticket(services, box, "anruferin@hotline.invalid")
    with session_scope(services.sessions) as s:
        s.execute(update(Ticket).where(Ticket.id == tid).values(channel="phone"))
    clock.now = local("2026-11-23 15:00")   # past the first-response deadline of a mail
    scheduler(services).tick()
    assert level(services, tid).first_responded_at == local("2026-11-23 09:00")
    assert level(services, tid).mark is None
