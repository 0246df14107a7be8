"""The web app's /healthz and /metrics, served by real uvicorn on loopback."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gateway.cli.demo import DEMO_MAILBOX
from gateway.db import session_scope
from gateway.models import Direction
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from mailboxes.outreach import set_outreach
from tests.support.cli import (
    XGATE,
    clean_env,
    db_env,
    dispose,
    init_installation,
    installation_services,
    installation_settings,
)
from tests.support.web import serving_web_app

MSG = b"From: a@partner.example\r\nSubject: Hallo\r\n\r\nText\r\n"


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The real app under uvicorn in a thread; yields its base URL."""
    with serving_web_app(settings) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def installed(tmp_path: Path, database_url: str) -> Iterator[tuple[Settings, Services]]:
    config = init_installation(tmp_path / "inst")
    settings = installation_settings(config, database_url)
    services = installation_services(settings)
    with session_scope(services.sessions) as s:
        add_mailbox(s, DEMO_MAILBOX, "Kindertagespflege")
    yield settings, services
    dispose(services)


def _enqueue(services: Services, *, age_seconds: float = 0) -> str:
    with session_scope(services.sessions) as s:
        return store_received(s, services.master_key, Envelope(
            Direction.INBOUND, "a@partner.example", [DEMO_MAILBOX], MSG), actor="test",
            now=services.clock() - timedelta(seconds=age_seconds)).queue_id


def _sample(metrics: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{name}{labels} not in metrics:\n{metrics}"
    return float(match.group(1))


def test_healthz_reports_database_and_queue(installed: tuple[Settings, Services]) -> None:
    settings, services = installed
    _enqueue(services)
    _enqueue(services)
    with serving(settings) as url:
        response = httpx.get(f"{url}/healthz")
    assert response.status_code == 200
    body = response.json()
    # The test clamd has only the test signatures: said loudly, as "degraded".
    assert body["status"] == "degraded"
    assert body["scanner"]["reachable"] is True
    assert body["scanner"]["real_signatures"] is False
    assert "WITHOUT REAL VIRUS SIGNATURES" in body["scanner"]["warning"]
    assert body["database"] == {"reachable": True}
    assert body["queue"]["received"] == 2
    assert body["queue"]["delivered"] == 0


def test_healthz_reports_an_unreachable_scanner(installed: tuple[Settings, Services],
                                                tmp_path: Path) -> None:
    settings, _ = installed
    settings.scanning.clamd_socket = tmp_path / "nobody-listens.sock"
    with serving(settings) as url:
        body = httpx.get(f"{url}/healthz").json()
    assert body["status"] == "degraded"
    assert body["scanner"]["reachable"] is False
    assert "nobody-listens.sock" in body["scanner"]["problem"]


def test_metrics_reflect_the_queue(installed: tuple[Settings, Services]) -> None:
    settings, services = installed
    _enqueue(services, age_seconds=120)
    _enqueue(services)
    with serving(settings) as url:
        response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _sample(text, "xgate_database_up") == 1.0
    assert _sample(text, "xgate_messages", '{state="received"}') == 2.0
    assert _sample(text, "xgate_messages", '{state="held"}') == 0.0
    assert 120 <= _sample(text, "xgate_queue_oldest_runnable_age_seconds") < 600


def test_unreachable_database_gives_503(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    settings = installation_settings(
        config, "postgresql+psycopg://xgate@127.0.0.1:1/none?connect_timeout=2")
    with serving(settings) as url:
        health = httpx.get(f"{url}/healthz", timeout=30)
        metrics = httpx.get(f"{url}/metrics", timeout=30)
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "degraded"
    assert body["database"]["reachable"] is False
    assert "OperationalError" in body["database"]["problem"]
    assert metrics.status_code == 200
    assert _sample(metrics.text, "xgate_database_up") == 0.0


def test_unknown_route_is_a_json_error(tmp_path: Path) -> None:
    settings = installation_settings(init_installation(tmp_path / "inst"))
    with serving(settings) as url:
        missing = httpx.get(f"{url}/api/nothing-here")
        page = httpx.get(f"{url}/nothing-here")
        wrong_method = httpx.post(f"{url}/healthz")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found",
                              "message": "no such resource: /api/nothing-here"}
    # Outside the API and the machine routes, people read the answer: an HTML page.
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


def test_stage_durations_from_a_worker_process(installed: tuple[Settings, Services],
                                               database_url: str, tmp_path: Path) -> None:
    """A separate ``xgate serve worker`` process observes; the web app's scrape sees it."""
    settings, services = installed
    # One message through each stage: the mailbox's receipt to the sender would be a second.
    with session_scope(services.sessions) as s:
        set_outreach(s, DEMO_MAILBOX, actor="test", receipt_enabled=False)
    qid = _enqueue(services)
    worker = subprocess.Popen(
        [str(XGATE), "-c", str(tmp_path / "inst" / "xgate.toml"), "serve", "worker"],
        env=clean_env(db_env(database_url)), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        with serving(settings) as url:
            while True:
                health = httpx.get(f"{url}/healthz").json()
                if health["queue"]["delivered"] == 1:
                    break
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                assert time.monotonic() < deadline, f"{qid} not delivered: {health}"
                time.sleep(0.2)
            text = httpx.get(f"{url}/metrics").text
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    for stage in ("parse", "route", "deliver"):
        assert _sample(text, "xgate_stage_duration_seconds_count", f'{{stage="{stage}"}}') == 1
    assert _sample(text, "xgate_stage_duration_seconds_sum", '{stage="deliver"}') > 0
