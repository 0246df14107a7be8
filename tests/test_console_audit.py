"""The console's audit viewer and *verify chain* over HTTP, on SQLite and PostgreSQL: pages of
the trail with the action, actor and date filters and keyset paging, bad input named on the
page, every page read recorded; verify chain run as a background task by the one check of
``xgate audit verify``, intact, then pointing at an entry altered in the database; the roles
(admin, auditor, DPO yes; a caseworker 403) and the task's page for its starter and admins
only. Forgetting the months before a given one (the function of ``xgate audit forget``): for
admins only (auditor and DPO 403, though they read the area), after a ticked confirmation,
the current month at most, bad input named on the page and nothing destroyed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

import gateway.audit.chain
from admin_ui.app import create_app
from gateway import audit
from gateway.audit import AuditAction
from gateway.audit.keys import period_of
from gateway.audit.view import all_entries
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, AuditKey
from gateway.services import Services
from gateway.tasks.runner import TaskRunner
from gateway.web.templates import office_time
from tests.support.console_web import add_console_staff, console_login
from tests.support.staff_web import BASE_URL

pytestmark = pytest.mark.usefixtures("cheap_hashing")


@pytest.fixture
def secrets(services: Services) -> dict[str, str]:
    return add_console_staff(services)


@pytest.fixture
def client(services: Services, clock: FakeClock, secrets: dict[str, str]
           ) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def login(client: TestClient, secrets: dict[str, str], clock: FakeClock, user: str) -> str:
    return console_login(client, secrets, clock, user)


def seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="entry-(\d+)">', page)]


def verify_chain(client: TestClient, csrf: str) -> int:
    answer = client.post("/console/audit/verify", data={"csrf_token": csrf},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/console/tasks/(\d+)", answer.headers["location"])
    assert found
    task_id = int(found.group(1))
    tasks = client.app.state.tasks  # type: ignore[attr-defined]
    assert isinstance(tasks, TaskRunner)
    tasks.wait(task_id)
    return task_id


def test_readers_may_open_the_trail_and_verify_a_caseworker_not(
        client: TestClient, secrets: dict[str, str], clock: FakeClock) -> None:
    for user, status in (("root", 200), ("dora", 200), ("dpo", 200), ("anna", 403)):
        csrf = login(client, secrets, clock, user)
        assert client.get("/console/audit").status_code == status, user
        answer = client.post("/console/audit/verify", data={"csrf_token": csrf},
                             follow_redirects=False)
        assert answer.status_code == (303 if status == 200 else 403), user
    login(client, secrets, clock, "dora")
    answer = client.post("/console/audit/verify", data={}, follow_redirects=False)
    assert answer.status_code == 403  # no CSRF token


def test_filters_paging_and_the_reads_recorded(client: TestClient, services: Services,
                                               secrets: dict[str, str],
                                               clock: FakeClock) -> None:
    login(client, secrets, clock, "dora")
    page = client.get("/console/audit", params={"action": "role-granted"})
    granted = seqs(page.text)
    # dora's and dpo's roles (the admins' are admin-granted).
    assert len(granted) == 2 and granted == sorted(granted, reverse=True)
    assert "<td>role-granted</td>" in page.text
    assert "<td>second-factor-enrolled</td>" not in page.text
    # Persons are sealed as actors; the filter opens the entries to find them.
    by_test = seqs(client.get("/console/audit", params={"actor": "TEST"}).text)
    assert set(granted) <= set(by_test)
    today = office_time(clock()).date()
    assert seqs(client.get("/console/audit", params={"day_from": today.isoformat(),
                                                     "day_to": today.isoformat()}).text)
    assert seqs(client.get("/console/audit", params={"day_to": "2020-01-01"}).text) == []
    # Pages of one, newest first, each older than the one before.
    shown: list[int] = []
    link = "/console/audit?action=role-granted&size=1"
    pages = 0
    while link:
        text = client.get(link.replace("&amp;", "&")).text
        shown += seqs(text)
        pages += 1
        following = re.search(r'href="([^"]+)" id="next-page"', text)
        link = following.group(1) if following else ""
    assert shown == granted and pages == 2
    with read_scope(services.sessions) as s:
        reads = [e for e in all_entries(s) if e.action == AuditAction.AUDIT_TRAIL_READ]
    assert reads and {e.actor for e in reads} == {"user:dora"}


@pytest.mark.parametrize(("params", "message"), [
    ({"day_from": "2026-12-04", "day_to": "2026-12-01"},
     "Der Zeitraum endet (2026-12-01) vor seinem Beginn (2026-12-04)."),
    ({"action": "everything"}, "Eine Aktion „everything“ gibt es nicht."),
    ({"day_to": "gestern"}, "„gestern“ ist kein Datum (Feld Bis (Datum))"),
    ({"size": "5000"}, "Eine Seite zeigt höchstens 200 Einträge."),
])
def test_bad_filter_input_is_named_on_the_page(client: TestClient, secrets: dict[str, str],
                                               clock: FakeClock, params: dict[str, str],
                                               message: str) -> None:
    login(client, secrets, clock, "dpo")
    page = client.get("/console/audit", params=params)
    assert page.status_code == 400 and message in page.text and 'id="entries"' not in page.text


def test_verify_chain_finds_the_chain_intact_then_the_altered_entry(
        client: TestClient, services: Services, secrets: dict[str, str],
        clock: FakeClock) -> None:
    csrf = login(client, secrets, clock, "dora")
    task_id = verify_chain(client, csrf)
    page = client.get(f"/console/tasks/{task_id}").text
    assert 'id="chain-intact"' in page and 'data-state="done"' in page
    with read_scope(services.sessions) as s:
        checked = audit.verify(s).checked
        victim = s.scalar(select(AuditEntry.seq).where(
            AuditEntry.action == AuditAction.ROLE_GRANTED).order_by(AuditEntry.seq).limit(1))
    assert victim is not None
    assert f"{checked - 1} Einträge geprüft" in page or f"{checked} Einträge geprüft" in page
    with session_scope(services.sessions) as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == victim)
                  .values(detail='{"role": "admin"}'))
    task_id = verify_chain(client, csrf)
    page = client.get(f"/console/tasks/{task_id}").text
    assert 'id="chain-broken"' in page and f"bei Eintrag {victim} unterbrochen" in page
    assert f"{victim - 1} erledigt" in page
    assert "altered" in page
    link = re.search(r'href="([^"]+)" id="broken-entry"', page)
    assert link and link.group(1) == f"/console/audit?before={victim + 1}"
    assert seqs(client.get(link.group(1)).text)[0] == victim
    with read_scope(services.sessions) as s:
        runs = [e for e in all_entries(s) if e.action == AuditAction.AUDIT_CHAIN_VERIFIED]
    assert [(e.actor, e.details["verdict"]) for e in runs] == [("user:dora", "intact"),
                                                              ("user:dora", "broken")]
    # The task is the starter's and the admins' to see.
    for user, status in (("root", 200), ("dpo", 404), ("anna", 404)):
        login(client, secrets, clock, user)
        assert client.get(f"/console/tasks/{task_id}").status_code == status, user


def test_verify_reports_progress_batch_by_batch(services: Services) -> None:
    with session_scope(services.sessions) as s:
        for n in range(5):
            audit.record(s, actor="worker-1", action=AuditAction.RETRY, detail={"attempt": n})
    calls: list[tuple[int, int]] = []
    with read_scope(services.sessions) as s:
        result = audit.verify(s, batch=2, progress=lambda done, total: calls.append(
            (done, total)))
    assert result.ok and result.checked == 5
    assert calls == [(2, 5), (4, 5)]


LONG_AGO = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)


def _record_long_ago(services: Services, monkeypatch: pytest.MonkeyPatch) -> int:
    """An entry of January 2024 with a personal part; its seq."""
    with monkeypatch.context() as m:
        m.setattr(gateway.audit.chain, "utcnow", lambda: LONG_AGO)
        with session_scope(services.sessions) as s:
            audit.record(s, actor="user:carla", action=AuditAction.RETRY,
                         detail={"attempt": 1})
    with read_scope(services.sessions) as s:
        seq = s.scalar(select(AuditEntry.seq).where(AuditEntry.action == AuditAction.RETRY))
    assert seq is not None
    return seq


def _destroyed(services: Services) -> list[str]:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(AuditKey.period).where(AuditKey.wrapped.is_(None))
                              .order_by(AuditKey.period)))


def test_an_admin_forgets_past_months_and_the_chain_stays_intact(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seq = _record_long_ago(services, monkeypatch)
    csrf = login(client, secrets, clock, "root")
    page = client.get("/console/audit").text
    assert 'id="forget-months"' in page and 'name="confirm"' in page
    assert f'max="{period_of(clock())}"' in page
    answer = client.post("/console/audit/forget", data={
        "csrf_token": csrf, "month": "2024-02", "confirm": "yes"})
    assert answer.status_code == 200, answer.text
    assert 'id="forget-done"' in answer.text and "2024-01" in answer.text
    assert _destroyed(services) == ["2024-01"]
    with read_scope(services.sessions) as s:
        assert audit.verify(s).ok
        entries = {e.seq: e for e in all_entries(s)}
    assert entries[seq].personal_deleted and "carla" not in entries[seq].actor
    last = entries[max(entries)]
    assert last.action == AuditAction.AUDIT_KEYS_DESTROYED and last.actor == "user:root"
    assert last.details == {"periods": ["2024-01"]}
    # Again: nothing left before that month, said so, nothing recorded.
    answer = client.post("/console/audit/forget", data={
        "csrf_token": csrf, "month": "2024-02", "confirm": "yes"})
    assert answer.status_code == 200 and 'id="forget-nothing"' in answer.text
    with read_scope(services.sessions) as s:
        assert max(e.seq for e in all_entries(s)) == last.seq


@pytest.mark.parametrize(("form", "message"), [
    ({"month": "2024-02"}, "Bitte bestätigen, dass die Angaben vor 2024-02 endgültig"),
    ({"month": "", "confirm": "yes"}, "Bitte einen Monat angeben (JJJJ-MM)."),
    ({"month": "Februar", "confirm": "yes"}, "„Februar“ ist kein Monat; bitte im Format JJJJ-MM."),
    ({"month": "2999-01", "confirm": "yes"}, "2999-01 liegt in der Zukunft; höchstens"),
])
def test_bad_forget_input_is_named_and_nothing_is_destroyed(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch, form: dict[str, str], message: str) -> None:
    _record_long_ago(services, monkeypatch)
    csrf = login(client, secrets, clock, "root")
    with read_scope(services.sessions) as s:
        before = audit.verify(s).checked
    answer = client.post("/console/audit/forget", data={"csrf_token": csrf, **form})
    assert answer.status_code == 400 and message in answer.text, answer.text
    assert 'id="forget-error"' in answer.text and 'id="forget-months"' in answer.text
    assert _destroyed(services) == []
    with read_scope(services.sessions) as s:
        assert audit.verify(s).checked == before


def test_only_admins_may_forget_and_only_with_the_csrf_token(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _record_long_ago(services, monkeypatch)
    for user, status in (("dora", 403), ("dpo", 403), ("anna", 403)):
        csrf = login(client, secrets, clock, user)
        if user != "anna":
            assert 'id="forget-months"' not in client.get("/console/audit").text, user
        answer = client.post("/console/audit/forget", data={
            "csrf_token": csrf, "month": "2024-02", "confirm": "yes"}, follow_redirects=False)
        assert answer.status_code == status, user
    login(client, secrets, clock, "root")
    answer = client.post("/console/audit/forget", data={"month": "2024-02", "confirm": "yes"},
                         follow_redirects=False)
    assert answer.status_code == 403  # no CSRF token
    assert _destroyed(services) == []
