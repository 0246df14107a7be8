"""1,000 uploads in a burst against a uvicorn-served portal, from 40 client addresses (the
portal behind a proxy on loopback, which names the client in X-Forwarded-For): the rate
limits answer 429 once they are reached, and every upload that got a receipt is in the queue
exactly once, sealed and whole; nothing else is stored."""

from __future__ import annotations

import email
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email import policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from crypto.at_rest import MasterKey
from gateway.db import make_engine, make_session_factory, read_scope
from gateway.models import Message
from gateway.portal.models import PortalRateHit, PortalSubmission
from gateway.queue.spool import content_context
from gateway.queue.store import load
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.portal import form_token, serving_portal

UPLOADS = 1_000
ADDRESSES = 40
PER_ADDRESS = 20  # 40 x 20 = 800 could pass per address; the overall limit stops at 500
OVERALL = 500
FIELDS = {"topic": "Kinderschutz", "name": "Erika Mustermann", "email": "",
          "case_reference": "", "message": "Anbei die Unterlagen."}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url, portal={
        "enabled": True, "min_fill_seconds": 0, "max_concurrent_uploads": 32,
        "submissions_per_ip_per_hour": PER_ADDRESS, "submissions_per_hour": OVERALL,
        "topics": [{"name": "Kinderschutz", "mailbox": "kinderschutz@jugendamt.example"}]})


@pytest.fixture
def portal(settings: Settings) -> Iterator[str]:
    with serving_portal(settings) as url:
        yield url


def test_a_burst_of_uploads_is_limited_and_nothing_accepted_is_lost(
        portal: str, settings: Settings) -> None:
    with httpx.Client(base_url=portal) as client:
        token = form_token(client)
        cookie = client.cookies["xgate_portal_form"]

    local = threading.local()

    def upload(n: int) -> tuple[str, int, str | None]:
        address = f"198.51.100.{n % ADDRESSES + 1}"
        data = f"%PDF-1.4 Bescheid Nr. {n}\n".encode()
        if not hasattr(local, "client"):  # one connection per thread, kept alive
            local.client = httpx.Client(base_url=portal, timeout=60,
                                        cookies={"xgate_portal_form": cookie})
            clients.append(local.client)
        answer = local.client.post(
            "/upload", data={**FIELDS, "form_token": token},
            files=[("files", (f"Bescheid-{n}.pdf", data, "application/pdf"))],
            headers={"X-Forwarded-For": address})
        found = re.search(r'id="reference">([^<]+)<', answer.text)
        if answer.status_code == 429:
            assert "Bitte versuchen Sie es später noch einmal" in answer.text
        return address, answer.status_code, found.group(1) if found else None

    clients: list[httpx.Client] = []
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(upload, range(UPLOADS)))
    finally:
        for client in clients:
            client.close()

    assert Counter(status for _a, status, _r in results) == {200: OVERALL, 429: UPLOADS - OVERALL}
    accepted = [(address, ref) for address, status, ref in results if status == 200]
    assert all(ref is not None for _a, ref in accepted)
    assert max(Counter(address for address, _r in accepted).values()) <= PER_ADDRESS
    references = {ref for _a, ref in accepted}
    assert len(references) == OVERALL

    # In the queue: each accepted upload once, sealed, whole; nothing for the refused ones.
    master = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    engine = make_engine(settings)
    try:
        with read_scope(make_session_factory(engine)) as session:
            rows = session.execute(select(PortalSubmission.reference, Message.id,
                                          Message.queue_id)
                                   .join(Message, Message.queue_id == PortalSubmission.queue_id)
                                   ).all()
            assert {reference for reference, _id, _q in rows} == references
            assert len(rows) == OVERALL == len({queue_id for _r, _id, queue_id in rows})
            assert session.scalar(select(func.count()).select_from(Message)) == OVERALL
            assert session.scalar(select(func.count()).select_from(PortalRateHit)) == OVERALL
            for reference, message_id, queue_id in rows:
                loaded = load(session, message_id, master, content_context)
                assert loaded.queue_id == queue_id
                data = loaded.content
                mail = email.message_from_bytes(data, policy=policy.default)
                assert mail["X-Xgate-Portal-Reference"] == reference
                [attachment] = mail.iter_attachments()
                payload = attachment.get_payload(decode=True)
                assert isinstance(payload, bytes)
                assert re.fullmatch(rb"%PDF-1\.4 Bescheid Nr\. \d+\n", payload)
    finally:
        engine.dispose()
