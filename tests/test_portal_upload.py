"""The portal's upload over HTTP: the form, its token (CSRF and fill time), the honeypot, the
rate limits, the file limits and names, the virus scan against the real clamd, the receipt,
and the inbound message it queues (sealed, to the topic's shared mailbox, with the files)."""

from __future__ import annotations

import asyncio
import email
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.requests import Request

from crypto.at_rest import MasterKey
from gateway.clock import FakeClock
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.models import Direction, Message, Recipient
from gateway.portal.app import create_portal_app
from gateway.portal.filenames import clean_filename
from gateway.portal.models import PortalRateHit, PortalSubmission
from gateway.portal.submission import Submission, UploadedFile, build_message
from gateway.portal.upload_form import parse_in_place
from gateway.queue.spool import content_context
from gateway.queue.store import load
from gateway.services import Services
from gateway.settings import Settings, load_settings
from gateway.web.templates import office_time
from mailboxes.directory import add_mailbox
from mailboxes.tickets.queries import list_tickets, ticket_view
from tests.conftest import make_settings
from tests.support.clamd import EICAR
from tests.support.pipeline import drain, filed_copies

MAILBOX = "kinderschutz@jugendamt.example"
TOPIC = "Kinderschutz"
# What a browser sends for a file input left empty (and it keeps the form multipart).
NO_FILE = [("files", ("", b"", "application/octet-stream"))]
FIELDS = {"topic": TOPIC, "name": "Erika Mustermann", "email": "",
          "case_reference": "JA-2026-0815", "message": "Anbei die Unterlagen."}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url, portal={
        "enabled": True, "max_upload_bytes": 3 * 1024 * 1024, "max_files": 3,
        "topics": [{"name": TOPIC, "mailbox": MAILBOX},
                   {"name": "Kita", "mailbox": "kita@jugendamt.example"}]})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_portal_app(settings, clock=clock)) as client:
        yield client


def _token(client: TestClient, clock: FakeClock) -> str:
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert found is not None
    clock.advance(10)  # a person takes longer than the minimum fill time
    return found.group(1)


def _post(client: TestClient, clock: FakeClock, files: list[tuple[str, bytes]] | None = None,
          **fields: str) -> Any:
    data = {**FIELDS, "form_token": _token(client, clock), **fields}
    parts = [("files", (name, content, "application/pdf")) for name, content in files or []]
    return client.post("/upload", data=data, files=parts or NO_FILE)


def _queued(settings: Settings) -> list[tuple[Message, list[str], EmailMessage]]:
    engine = make_engine(settings)
    master = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    found = []
    try:
        with session_scope(make_session_factory(engine)) as session:
            for message in session.scalars(select(Message).order_by(Message.id)):
                rcpts = list(session.scalars(select(Recipient.address).where(
                    Recipient.message_id == message.id)))
                data = load(session, message.id, master, content_context).content
                parsed = email.message_from_bytes(data, policy=policy.default)
                assert isinstance(parsed, EmailMessage)
                session.expunge(message)
                found.append((message, rcpts, parsed))
    finally:
        engine.dispose()
    return found


def _count(settings: Settings, model: Any) -> int:
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


# -- the pages ------------------------------------------------------------------------------


def test_the_form_works_without_javascript_and_sets_its_token_cookie(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "<script" not in page.text
    assert 'enctype="multipart/form-data"' in page.text and 'action="/upload"' in page.text
    assert f'<option value="{TOPIC}"' in page.text
    assert 'name="website"' in page.text  # the honeypot, hidden from people
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None and client.cookies.get("xgate_portal_form") == token.group(1)
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/nowhere").status_code == 404
    english = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "Send a message and documents" in english.text and 'lang="en"' in english.text
    assert "<html" in client.get("/nowhere").text


def test_a_submission_is_queued_sealed_to_the_topics_mailbox_with_its_files(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    first, second = b"%PDF-1.4 erste Seite\n" * 50, b"Zweite Datei\n" * 100
    answer = _post(client, clock, [("Bescheid.pdf", first), ("../../etc/Anlage 2.pdf", second)],
                   email="erika@example.org")
    assert answer.status_code == 200, answer.text
    reference = re.search(r'id="reference">([^<]+)<', answer.text)
    assert reference is not None and re.fullmatch(r"P(-[2-9A-Z]{4}){4}", reference.group(1))
    # The receipt: reference, office time, each file's name and SHA-256; printable.
    assert hashlib.sha256(first).hexdigest() in answer.text
    assert hashlib.sha256(second).hexdigest() in answer.text
    assert "Anlage 2.pdf" in answer.text and "../" not in answer.text
    assert 'media="print"' in answer.text
    shown = office_time(clock()).strftime("%d.%m.%Y %H:%M:%S")
    assert f"{shown} (Ortszeit)" in answer.text
    assert "erika@example.org" in answer.text

    queued = _queued(settings)
    inbound = [q for q in queued if q[0].direction == Direction.INBOUND]
    outbound = [q for q in queued if q[0].direction == Direction.OUTBOUND]
    assert len(inbound) == 1 and len(outbound) == 1
    message, rcpts, mail = inbound[0]
    assert rcpts == [MAILBOX] and message.mail_from == "erika@example.org"
    assert mail["To"] == MAILBOX and "erika@example.org" in mail["From"]
    assert mail["X-Xgate-Portal-Reference"] == reference.group(1)
    assert "JA-2026-0815" in mail["Subject"]
    body = mail.get_body(("plain",))
    assert body is not None and "Anbei die Unterlagen." in body.get_content()
    attachments = [(a.get_filename(), a.get_content()) for a in mail.iter_attachments()]
    assert attachments == [("Bescheid.pdf", first), ("Anlage 2.pdf", second)]
    # The receipt mail: the gateway's own notice, German first, without content.
    notice, notice_rcpts, notice_mail = outbound[0]
    assert notice.mail_from == "" and notice_rcpts == ["erika@example.org"]
    text = notice_mail.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert reference.group(1) in content and content.index("eingegangen") < content.index(
        "received")
    for secret in ("Anbei", "Bescheid", "Kinderschutz", "JA-2026"):
        assert secret not in content and secret not in str(notice_mail["Subject"])
    with session_scope(make_session_factory(make_engine(settings))) as session:
        row = session.scalars(select(PortalSubmission)).one()
        assert (row.reference, row.queue_id, row.files) == (
            reference.group(1), message.queue_id, 2)


def test_without_an_address_it_comes_from_the_portals_no_reply_and_no_receipt_is_mailed(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    answer = _post(client, clock)
    assert answer.status_code == 200, answer.text
    [(message, rcpts, mail)] = _queued(settings)
    assert message.mail_from == settings.portal.noreply_address and rcpts == [MAILBOX]
    assert list(mail.iter_attachments()) == []


def test_nothing_is_written_to_disk_in_plaintext(
        client: TestClient, clock: FakeClock, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rollover(_self: object) -> None:
        raise AssertionError("an upload rolled over to a temporary file on disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_rollover)
    marker = b"KLARTEXT-MARKER-4711 "
    big = marker * (2 * 1024 * 1024 // len(marker))  # over Starlette's 1 MB spool size
    answer = _post(client, clock, [("gross.pdf", big)], message="KLARTEXT-MARKER-4711 im Text")
    assert answer.status_code == 200, answer.text
    for path in Path(settings.data_dir).rglob("*"):
        if path.is_file():
            assert b"KLARTEXT-MARKER-4711" not in path.read_bytes(), path
    if settings.database.url.startswith("sqlite:///"):
        database = Path(settings.database.url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):
            assert b"KLARTEXT-MARKER-4711" not in path.read_bytes(), path


# -- refused, with a page that says why, and nothing queued ---------------------------------


def test_a_post_without_the_token_cookie_or_with_another_token_is_refused(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    token = _token(client, clock)
    client.cookies.clear()
    answer = client.post("/upload", data={**FIELDS, "form_token": token}, files=NO_FILE)
    assert answer.status_code == 403 and "Sicherheitsprüfung" in answer.text
    _token(client, clock)  # a cookie again, but the field names another
    forged = token.rsplit(".", 1)[0] + "." + "0" * 64
    assert client.post("/upload", data={**FIELDS, "form_token": forged},
                       files=NO_FILE).status_code == 403
    # Not multipart (as a cross-site form may send): refused before anything else.
    assert client.post("/upload", data={**FIELDS, "form_token": token}).status_code == 400
    assert _queued(settings) == []


def test_a_form_sent_back_too_fast_or_with_the_honeypot_filled_is_refused(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    page = client.get("/")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None
    clock.advance(1)
    answer = client.post("/upload", data={**FIELDS, "form_token": token.group(1)},
                         files=NO_FILE)
    assert answer.status_code == 400 and "sehr schnell" in answer.text
    answer = _post(client, clock, website="http://spam.example")
    assert answer.status_code == 400
    assert _queued(settings) == []


def test_too_many_submissions_get_429_per_address_and_in_all(
        settings: Settings, clock: FakeClock) -> None:
    settings.portal.submissions_per_ip_per_hour = 2
    with TestClient(create_portal_app(settings, clock=clock)) as client:
        assert [_post(client, clock).status_code for _ in range(3)] == [200, 200, 429]
        assert "später" in _post(client, clock).text
        clock.advance(3600)
        assert _post(client, clock).status_code == 200
        # Hashed, and forgotten after the retention.
        assert _count(settings, PortalRateHit) >= 3
        clock.advance(25 * 3600)
        assert _post(client, clock).status_code == 200
        assert _count(settings, PortalRateHit) == 1
    settings.portal.submissions_per_ip_per_hour = 100
    settings.portal.submissions_per_hour = 2
    with TestClient(create_portal_app(settings, clock=clock)) as client:
        assert _post(client, clock).status_code == 200
        assert _post(client, clock).status_code == 429


def test_too_large_or_too_many_files_get_413_with_a_clear_message(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    big = b"x" * (3 * 1024 * 1024 + 1)
    answer = _post(client, clock, [("gross.pdf", big)])
    assert answer.status_code == 413 and "höchstens 3 MB" in answer.text
    parts = [(f"d{i}.pdf", b"inhalt") for i in range(4)]
    answer = _post(client, clock, parts)
    assert answer.status_code == 413 and "höchstens 3" in answer.text
    assert _queued(settings) == []


def test_an_empty_file_is_refused_by_name(client: TestClient, clock: FakeClock,
                                          settings: Settings) -> None:
    answer = _post(client, clock, [("gut.pdf", b"inhalt"), ("leer.pdf", b"")])
    assert answer.status_code == 422 and "„leer.pdf“ ist leer" in answer.text
    assert _queued(settings) == []


def test_missing_fields_show_the_form_again_with_what_to_fix(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    answer = _post(client, clock, name="", email="keine-adresse", topic="Unbekannt")
    assert answer.status_code == 422
    assert "Bitte geben Sie Ihren Namen an" in answer.text
    assert "E-Mail-Adresse ist nicht gültig" in answer.text
    assert "Bitte wählen Sie ein Thema" in answer.text
    assert "Anbei die Unterlagen." in answer.text  # what was typed stays
    assert _queued(settings) == []


def test_an_infected_file_is_refused_in_the_request_by_the_real_clamd(
        client: TestClient, clock: FakeClock, settings: Settings) -> None:
    answer = _post(client, clock, [("harmlos.pdf", b"inhalt"), ("rechnung.pdf", EICAR)])
    assert answer.status_code == 422
    assert "Schadsoftware" in answer.text and "rechnung.pdf" in answer.text
    assert _queued(settings) == []


@pytest.mark.parametrize(("raw", "clean"), [
    ("C:\\Users\\erika\\Bescheid.pdf", "Bescheid.pdf"),
    ("../../etc/passwd", "passwd"),
    ("rechnung\u202efdp.exe", "rechnungfdp.exe"),
    ("a\x00b\x1fc\r\n.pdf", "abc.pdf"),
    ("...", "datei"),
    ("", "datei"),
    ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),  # 120 characters, the type kept
])
def test_file_names_are_cleaned(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


# -- the worker takes it from there ---------------------------------------------------------


def test_the_worker_scans_the_submission_and_files_it_into_a_ticket_like_mail(
        client: TestClient, clock: FakeClock, settings: Settings, services: Services) -> None:
    with session_scope(services.sessions) as session:
        box = add_mailbox(session, MAILBOX, "Kinderschutz").id
    answer = _post(client, clock, [("Bescheid.pdf", b"%PDF-1.4 Bescheid\n")])
    assert answer.status_code == 200, answer.text
    drain(services)
    [filed] = filed_copies(services, MAILBOX)
    mail = email.message_from_bytes(filed, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    assert [a.get_filename() for a in mail.iter_attachments()] == ["Bescheid.pdf"]
    with session_scope(services.sessions) as session:
        [ticket] = list_tickets(session, services.master_key, box).rows
        assert ticket.subject == f"Bürgerportal: {TOPIC} (JA-2026-0815)"
    # Without an address nothing answers the portal's no-reply sender (no dead letter).
    assert [m.direction for m, _r, _mail in _queued(settings)] == [Direction.INBOUND]


def test_a_citizen_with_an_address_gets_one_mail_the_portals_receipt_not_the_tickets_too(
        client: TestClient, clock: FakeClock, settings: Settings, services: Services) -> None:
    with session_scope(services.sessions) as session:
        box = add_mailbox(session, MAILBOX, "Kinderschutz").id
    answer = _post(client, clock, [("Bescheid.pdf", b"%PDF-1.4 Bescheid\n")],
                   email="erika@example.org")
    assert answer.status_code == 200, answer.text
    drain(services)
    with read_scope(services.sessions) as session:
        [ticket] = list_tickets(session, services.master_key, box).rows
        history = ticket_view(session, services.master_key, ticket.id).history
    assert [(h.action, h.detail) for h in history if h.action.startswith("receipt")] == [
        ("receipt-skipped", {"reason": "Auto-Submitted: auto-generated"})]
    # In the queue: the submission and the portal's receipt to her, nothing else.
    to_her = [(m.direction, mail["Subject"]) for m, rcpts, mail in _queued(settings)
              if rcpts == ["erika@example.org"]]
    assert len(to_her) == 1 and to_her[0][0] == Direction.OUTBOUND
    assert "Eingangsbestätigung [XG-" not in str(to_her[0][1])


@pytest.mark.parametrize("sizes", [[1], [56, 57, 58], [57 * 1024 - 1, 57 * 1024 + 1],
                                   [3, 1_000_003]])
def test_files_come_out_of_the_built_message_exactly_as_uploaded(sizes: list[int]) -> None:
    # Put in by gateway.portal.mime_files after the email package's generator ran.
    files = [UploadedFile(f"Bescheid Nr. {n} für Jürgen.pdf", "application/pdf",
                          os.urandom(size)) for n, size in enumerate(sizes)]
    submission = Submission(topic=TOPIC, mailbox=MAILBOX, name="Erika Mustermann",
                            email=None, case_reference=None, message="Anbei.", files=files)
    data = build_message(load_settings(None), submission, "P-2345-6789-ABCD-EFGH",
                         FakeClock()())
    mail = email.message_from_bytes(data, policy=policy.default)
    assert [(a.get_filename(), a.get_payload(decode=True)) for a in mail.iter_attachments()
            ] == [(f.name, f.data) for f in files]
    lines = data.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and max(len(line) for line in lines) <= 78


def test_the_body_is_parsed_in_place_its_files_are_views_not_copies() -> None:
    data = os.urandom(3 * 1024 * 1024)
    boundary = "xgateboundary"
    body = bytearray(
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nErika\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n".encode() + data
        + f"\r\n--{boundary}--\r\n".encode())
    request = Request({"type": "http", "method": "POST", "headers": [
        (b"content-type", f"multipart/form-data; boundary={boundary}".encode())]})
    form = asyncio.run(parse_in_place(request, body, max_parts=2))
    [upload] = form.files
    assert (form.get("name"), upload.filename, upload.content_type) == (
        "Erika", "a.pdf", "application/pdf")
    assert isinstance(upload.data, memoryview) and upload.data.obj is body
    assert upload.data == data
