"""The caseworker's pages over HTTP (TestClient, real SQLite and PostgreSQL, the real worker
filing mail into tickets, a fake clock): the mailbox list, the ticket list with its filters
and pages, the ticket page with its audited reads, the reply, note, assignment and state
forms with their errors, downloads, and uploads that never touch the disk."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.audit.view import opened as opened_audit
from gateway.clock import FakeClock
from gateway.db import read_scope
from gateway.models import AuditEntry, Message
from gateway.services import Services
from mailboxes.tickets.models import Article, Ticket
from tests.support.staff_web import BASE_URL, enrol, form_csrf, web_login
from tests.support.ticket_web import (
    BOX,
    OTHER_BOX,
    PASSWORD,
    deliver,
    latest_ticket,
    mail,
    two_teams,
)

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")

PDF = b"%PDF-1.4 test"


@pytest.fixture
def teams(services: Services) -> Services:
    two_teams(services)
    deliver(services, mail("Frage zur Pflegeerlaubnis", msgid="a1", attachment=PDF))
    deliver(services, mail("Adoption Unterlagen", to=OTHER_BOX, msgid="b1"), to=OTHER_BOX)
    return services


@pytest.fixture
def app_client(teams: Services, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(teams.settings, clock=clock), base_url=BASE_URL) as client:
        yield client


def login(client: TestClient, services: Services, clock: FakeClock, user: str) -> str:
    return web_login(client, user, PASSWORD, enrol(services.settings, user), at=clock())


@pytest.fixture
def anna(app_client: TestClient, teams: Services, clock: FakeClock) -> TestClient:
    login(app_client, teams, clock, "anna")
    return app_client


def count(services: Services, model: type, **where: object) -> int:
    with read_scope(services.sessions) as s:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(s.scalar(query) or 0)


def test_start_page_lists_only_my_mailboxes_with_counts(anna: TestClient) -> None:
    page = anna.get("/")
    assert "Kindertagespflege" in page.text and "1 neu, 0 offen" in page.text
    assert "Adoptionsvermittlung" not in page.text


def test_admin_sees_no_mailbox_they_are_not_a_member_of(app_client: TestClient,
                                                         teams: Services,
                                                         clock: FakeClock) -> None:
    login(app_client, teams, clock, "root")
    assert "Sie sind in keinem Sammelpostfach Mitglied." in app_client.get("/").text
    ids = latest_ticket(teams, BOX)
    assert app_client.get(f"/mailboxes/{ids.mailbox_id}").status_code == 404
    assert app_client.get(f"/tickets/{ids.ticket_id}").status_code == 404


def test_ticket_list_shows_columns_filters_and_pages(anna: TestClient, teams: Services) -> None:
    for n in range(3):
        deliver(teams, mail(f"Nachfrage Betreuung {n}", msgid=f"x{n}",
                            sender=f"eltern{n}@web.example"), sender=f"eltern{n}@web.example")
    box = latest_ticket(teams, BOX).mailbox_id
    page = anna.get(f"/mailboxes/{box}")
    assert page.status_code == 200
    for text in ("Frage zur Pflegeerlaubnis", "tagesmutter@web.example", "neu",
                 "unverschlüsselt", "nicht signiert", "Nachfrage Betreuung 2"):
        assert text in page.text
    assert "Adoption" not in page.text.split("<main")[1]
    found = anna.get(f"/mailboxes/{box}", params={"q": "Pflegeerlaubnis"}).text
    assert "Frage zur Pflegeerlaubnis" in found and "Nachfrage" not in found
    found = anna.get(f"/mailboxes/{box}", params={"q": "eltern1"}).text
    assert "Nachfrage Betreuung 1" in found and "Nachfrage Betreuung 2" not in found
    assert "Keine Vorgänge" in anna.get(f"/mailboxes/{box}", params={"state": "closed"}).text
    assert "Keine Vorgänge" in anna.get(f"/mailboxes/{box}", params={"assignee": "none",
                                                                      "state": "open"}).text
    # Junk in the filters is ignored, junk ids are pages that do not exist.
    assert anna.get(f"/mailboxes/{box}", params={"state": "x", "assignee": "9"}
                    ).status_code == 200
    assert anna.get(f"/mailboxes/{box}", params={"before": "-1"}).status_code == 404
    assert anna.get("/mailboxes/99999999999999999999").status_code == 404


def test_paging_by_keyset(anna: TestClient, teams: Services,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    import admin_ui.pages.mailboxes.routes as routes
    monkeypatch.setattr(routes, "PAGE_SIZE", 1)
    deliver(teams, mail("Zweite Frage", msgid="a2", sender="b@web.example"),
            sender="b@web.example")
    box = latest_ticket(teams, BOX).mailbox_id
    # PAGE_SIZE is read when the page is made, so the patched value counts.
    first = anna.get(f"/mailboxes/{box}").text
    assert "Zweite Frage" in first and "Pflegeerlaubnis" not in first
    older = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = anna.get(older).text
    assert "Pflegeerlaubnis" in second and "Zweite Frage" not in second
    assert 'rel="next"' not in second


def test_ticket_page_shows_the_message_and_audits_each_read(anna: TestClient,
                                                             teams: Services) -> None:
    ids = latest_ticket(teams, BOX)
    page = anna.get(f"/tickets/{ids.ticket_id}")
    assert page.status_code == 200
    assert "Hallo, eine Frage." in page.text and "Antrag.pdf" in page.text
    assert "Eingangsbestätigung an " in page.text
    with read_scope(teams.sessions) as s:
        reads = [e for e in opened_audit(s, s.scalars(select(AuditEntry).where(
            AuditEntry.action == "ticket-content-read")).all())]
    assert {(e.details["article"], e.details["part"]) for e in reads} >= {
        (ids.article_id, "message")}
    assert all(e.actor == "user:anna" for e in reads)

    download = anna.get(f"/tickets/{ids.ticket_id}/articles/{ids.article_id}/attachments/0")
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"Antrag.pdf\"; filename*=UTF-8''Antrag.pdf")
    assert anna.get(f"/tickets/{ids.ticket_id}/articles/{ids.article_id}/attachments/1"
                    ).status_code == 404


def test_html_mail_is_shown_as_text_with_nothing_active(anna: TestClient,
                                                         teams: Services) -> None:
    html = ('<html><body><p>Guten Tag</p><script>alert("x")</script>'
            '<a href="javascript:alert(1)">hier klicken</a>'
            '<img src="https://tracker.example/pixel.png" alt="Logo"></body></html>')
    data = (f"From: {BOX.replace('kita', 'x')}\r\nTo: {BOX}\r\nSubject: HTML\r\n"
            "Message-ID: <h1@web.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n").encode()
    deliver(teams, data, sender="x@web.example")
    page = anna.get(f"/tickets/{latest_ticket(teams, BOX).ticket_id}").text
    body = page.split("<main")[1]
    assert "Guten Tag" in body and "hier klicken" in body
    assert "<script" not in body and "<img" not in body and 'href="javascript' not in body
    assert "alert(&#34;x&#34;)" not in body and 'alert("x")' not in body
    # The image is its alt text only: its address is not even shown.
    assert "[Logo]" in body and "tracker.example" not in body
    assert "hier klicken [javascript:alert(1)]" in body  # the address as text, not a link


def test_note_assign_and_state_by_post_redirect_get(anna: TestClient, teams: Services) -> None:
    ids = latest_ticket(teams, BOX)
    csrf = form_csrf(anna.get(f"/tickets/{ids.ticket_id}").text)
    url = f"/tickets/{ids.ticket_id}"
    answer = anna.post(url + "/notes", data={"text": "Rückruf vereinbart",
                                             "csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == url
    assert anna.post(url + "/assign", data={"assignee": "me", "csrf_token": csrf},
                     follow_redirects=False).status_code == 303
    assert anna.post(url + "/state", data={"state": "open", "csrf_token": csrf},
                     follow_redirects=False).status_code == 303
    page = anna.get(url).text
    assert "Rückruf vereinbart" in page and "Interne Notiz" in page
    assert '<dd id="ticket-assignee">anna</dd>' in page
    assert '<dd id="ticket-state">offen</dd>' in page
    # To another member, then to a stranger (refused on the page, nothing changed).
    assert anna.post(url + "/assign", data={"assignee": "lena", "csrf_token": csrf},
                     follow_redirects=False).status_code == 303
    refused = anna.post(url + "/assign", data={"assignee": "bert", "csrf_token": csrf})
    assert refused.status_code == 409 and "bert ist kein Mitglied dieses Postfachs." in refused.text
    assert '<dd id="ticket-assignee">lena</dd>' in refused.text
    refused = anna.post(url + "/state", data={"state": "new", "csrf_token": csrf})
    assert refused.status_code == 409 and "nicht von „offen“ zu „neu“ wechseln" in refused.text
    refused = anna.post(url + "/notes", data={"text": "x" * 20_001, "csrf_token": csrf})
    assert refused.status_code == 409 and "höchstens 20000 Zeichen" in refused.text
    assert count(teams, Article, ticket_id=ids.ticket_id, kind="note") == 1


def test_reply_with_attachment_goes_to_the_queue_as_the_mailbox(anna: TestClient,
                                                                teams: Services) -> None:
    ids = latest_ticket(teams, BOX)
    url = f"/tickets/{ids.ticket_id}"
    csrf = form_csrf(anna.get(url).text)
    # Built by hand: httpx would percent-encode the control character in the file name.
    body = (f'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
            '--B\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
            'Die Erlaubnis ist da.\r\n--B\r\nContent-Disposition: form-data; '
            'name="attachments"; filename="../../etc/Bescheid\x07.pdf"\r\n'
            'Content-Type: application/pdf\r\n\r\n%PDF-1\r\n--B--\r\n').encode()
    answer = anna.post(url + "/reply", content=body, follow_redirects=False,
                       headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert answer.status_code == 303, answer.text
    with read_scope(teams.sessions) as s:
        reply = s.scalars(select(Article).where(Article.ticket_id == ids.ticket_id,
                                                Article.kind == "reply")).one()
        queued = s.scalars(select(Message).where(Message.queue_id == reply.queue_id)).one()
        assert queued.mail_from == BOX
    page = anna.get(url).text
    assert "Antwort" in page and "Wird bearbeitet" in page
    assert "Bescheid.pdf" in page and "etc" not in page.split("Bescheid.pdf")[0][-40:]


def test_reply_errors_are_shown_on_the_page_and_nothing_is_stored(
        anna: TestClient, teams: Services, clock: FakeClock) -> None:
    ids = latest_ticket(teams, BOX)
    url = f"/tickets/{ids.ticket_id}"
    csrf = form_csrf(anna.get(url).text)
    before = count(teams, Message)
    long_case = anna.post(url + "/reply", data={"text": "Hallo", "case": "A" * 201,
                                                "csrf_token": csrf},
                          files=[("attachments", ("a.txt", b"x", "text/plain"))])
    assert long_case.status_code == 409
    assert "Das Aktenzeichen darf höchstens 200 Zeichen" in long_case.text
    assert "Hallo" in long_case.text  # what was typed is kept
    empty = anna.post(url + "/reply", data={"text": "  ", "csrf_token": csrf},
                      files=[("attachments", ("", b"", "application/octet-stream"))])
    assert empty.status_code == 409 and "Die Antwort hat keinen Text." in empty.text
    anna.post(url + "/state", data={"state": "closed", "csrf_token": csrf})
    closed = anna.post(url + "/reply", data={"text": "Noch etwas", "csrf_token": csrf},
                       files=[("attachments", ("", b"", "application/octet-stream"))])
    assert closed.status_code == 409 and "ist geschlossen. Öffnen Sie ihn wieder" in closed.text
    assert "Nichts wurde gespeichert. Grund:" in closed.text
    assert count(teams, Message) == before
    assert count(teams, Article, ticket_id=ids.ticket_id, kind="reply") == 0


def test_oversize_upload_is_413_with_a_message(app_client: TestClient, teams: Services,
                                               clock: FakeClock) -> None:
    teams.settings.smtp.max_message_bytes = 50_000
    with TestClient(create_app(teams.settings, clock=clock), base_url=BASE_URL) as client:
        login(client, teams, clock, "anna")
        ids = latest_ticket(teams, BOX)
        csrf = form_csrf(client.get(f"/tickets/{ids.ticket_id}").text)
        answer = client.post(f"/tickets/{ids.ticket_id}/reply",
                             data={"text": "Anbei", "csrf_token": csrf},
                             files=[("attachments", ("gross.bin", b"x" * 2_000_000,
                                                     "application/octet-stream"))])
    assert answer.status_code == 413
    assert "Die Anfrage ist zu groß." in answer.text
    assert count(teams, Article, ticket_id=ids.ticket_id, kind="reply") == 0


def test_uploads_stay_in_memory(anna: TestClient, teams: Services,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 MB attachment (Starlette's spool rolls over to a temporary file above 1 MB)."""

    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was written to a temporary file")

    ids = latest_ticket(teams, BOX)
    csrf = form_csrf(anna.get(f"/tickets/{ids.ticket_id}").text)
    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "mkstemp", no_disk)
    answer = anna.post(f"/tickets/{ids.ticket_id}/reply",
                       data={"text": "Anbei", "csrf_token": csrf},
                       files=[("attachments", ("scan.pdf", b"%PDF" + b"x" * 3_000_000,
                                               "application/pdf"))],
                       follow_redirects=False)
    assert answer.status_code == 303, answer.text[:500]
    assert count(teams, Article, ticket_id=ids.ticket_id, kind="reply") == 1


def test_times_are_shown_on_the_office_clock(anna: TestClient, teams: Services) -> None:
    ids = latest_ticket(teams, BOX)
    with read_scope(teams.sessions) as s:
        created = s.get(Ticket, ids.ticket_id).created_at  # type: ignore[union-attr]
    berlin = created.astimezone(ZoneInfo("Europe/Berlin"))
    assert berlin.utcoffset() != timedelta(0)  # else this test could not tell the two apart
    shown = berlin.strftime("%d.%m.%Y %H:%M")
    assert shown in anna.get(f"/tickets/{ids.ticket_id}").text
    assert shown in anna.get(f"/mailboxes/{ids.mailbox_id}").text


def test_english_pages(anna: TestClient, teams: Services) -> None:
    anna.cookies.set("xgate_lang", "en")
    ids = latest_ticket(teams, BOX)
    assert "Your shared mailboxes" in anna.get("/").text
    assert "Tickets, newest first" in anna.get(f"/mailboxes/{ids.mailbox_id}").text
    page = anna.get(f"/tickets/{ids.ticket_id}").text
    assert "Internal note" in page
    refused = anna.post(f"/tickets/{ids.ticket_id}/notes",
                        data={"text": " ", "csrf_token": form_csrf(page)})
    assert refused.status_code == 409
    assert "Nothing was saved. Reason:" in refused.text and "The note is empty." in refused.text


def test_ticket_count_sanity(teams: Services) -> None:
    assert count(teams, Ticket) == 2
