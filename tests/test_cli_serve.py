"""``xgate serve`` end to end: the real process tree, a message by SMTP, health, shutdown."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.cli.demo import DEMO_MAILBOX
from gateway.db import session_scope
from gateway.services import Services
from mailboxes.directory import find_mailbox
from mailboxes.store import messages_in, read_message
from tests.support.cli import (
    XGATE,
    clean_env,
    dispose,
    init_installation,
    installation_services,
    installation_settings,
    run_xgate,
)
from tests.support.ports import free_port
from tests.support.sockets import greets

# The children of "xgate serve" with the default of two worker processes.
PARTS = ("smtp", "worker-1", "worker-2", "web")
# Not one of the demo senders: the demo mail "xgate init --demo" queued is filed too.
SENDER = "tagesmutter@example.org"

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def alive(pid: int) -> bool:
    """Running; a zombie (exited, not yet reaped by whoever adopted it) counts as gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@dataclass
class Served:
    process: subprocess.Popen[str]
    inbound: int
    web: int
    services: Services
    stdout: list[str] = field(default_factory=list)
    logs: list[dict[str, object]] = field(default_factory=list)
    raw_stderr: list[str] = field(default_factory=list)

    def collect(self) -> None:
        def out() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.stdout.append(line.rstrip("\n"))

        def err() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.raw_stderr.append(line)
                try:
                    self.logs.append(json.loads(line))
                except ValueError:
                    # A worker killed by the test while writing leaves half a line (and
                    # the next process's line joins it); the thread must read on.
                    continue

        for target in (out, err):
            threading.Thread(target=target, daemon=True).start()

    def child_pids(self, part: str) -> list[int]:
        return [int(str(e["pid"])) for e in list(self.logs)
                if e.get("logger") == "gateway.serve.supervisor" and e.get("part") == part
                and str(e["message"]).startswith("started")]

    def mailbox_count(self) -> int:
        """Messages this test sent that are filed (not the demo mail init queued)."""
        with session_scope(self.services.sessions) as s:
            mailbox = find_mailbox(s, DEMO_MAILBOX)
            assert mailbox is not None
            return len([m for m in messages_in(s, mailbox.id) if m.mail_from == SENDER])

    def send(self, subject: str) -> None:
        body = (f"From: {SENDER}\r\nTo: {DEMO_MAILBOX}\r\n"
                f"Subject: {subject}\r\n\r\nAnmeldung\r\n").encode()
        with smtplib.SMTP("127.0.0.1", self.inbound, timeout=30) as smtp:
            smtp.sendmail(SENDER, [DEMO_MAILBOX], body)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = init_installation(tmp_path / "inst", "--demo")
    inbound, submission, web = free_port(), free_port(), free_port()
    env = clean_env({
        "XGATE_SMTP__INBOUND__PORT": str(inbound),
        "XGATE_SMTP__SUBMISSION__PORT": str(submission),
        "XGATE_WEB__PORT": str(web),
        # init --demo switches the citizen portal on: on a free port, not its default.
        "XGATE_PORTAL__PORT": str(free_port()),
        # ... and its catcher: tests on other workers may run serve at the same time.
        "XGATE_DEMO__CATCHER__PORT": str(free_port()),
        "XGATE_LOGGING__JSON": "true",
        "XGATE_WORKERS__POLL_INTERVAL_SECONDS": "0.1",
    })
    process = subprocess.Popen([str(XGATE), "-c", str(config), "serve"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    services = installation_services(installation_settings(config))
    served = Served(process, inbound, web, services)
    served.collect()
    try:
        wait_for(lambda: greets(inbound) and greets(submission) and answers(web),
                 "the listeners")
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        dispose(services)


def test_serve_receives_files_and_stops_cleanly(served: Served) -> None:
    assert served.stdout[0].startswith("xgate serving")
    assert any(f"smtp inbound    on 127.0.0.1:{served.inbound}" in li for li in served.stdout)
    assert any(f"http://127.0.0.1:{served.web}/" in li for li in served.stdout)

    served.send("Anmeldung Kindertagespflege")
    wait_for(lambda: served.mailbox_count() == 1, "the message in the mailbox")
    with session_scope(served.services.sessions) as s:
        mailbox = find_mailbox(s, DEMO_MAILBOX)
        assert mailbox is not None
        [stored] = [m for m in messages_in(s, mailbox.id) if m.mail_from == SENDER]
        assert b"Anmeldung Kindertagespflege" in read_message(served.services.master_key,
                                                              stored)
    health = httpx.get(f"http://127.0.0.1:{served.web}/healthz", timeout=10)
    assert health.status_code == 200
    # This message, and whatever of init's demo mail (and its receipts) is done already.
    assert health.json()["queue"]["delivered"] >= 1

    children = [pid for part in PARTS for pid in served.child_pids(part)]
    assert len(children) == len(PARTS)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=10) == 0
    assert not [pid for pid in children if alive(pid)]
    # Every log line is one JSON object; the intake names the queue id as a field.
    queued = [e for e in served.logs if e.get("message") == "message queued"]
    assert queued and isinstance(queued[0].get("queue_id"), str)
    assert all("Traceback" not in line for line in served.raw_stderr)


def test_a_part_that_dies_is_restarted(served: Served) -> None:
    [worker] = served.child_pids("worker-1")
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: len(served.child_pids("worker-1")) == 2, "the worker's restart")
    assert served.child_pids("worker-1")[1] != worker
    served.send("nach dem Neustart")
    wait_for(lambda: served.mailbox_count() == 1, "the message in the mailbox")
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=10) == 0
    assert not listening(served.inbound)


def test_children_stop_when_the_supervisor_is_killed(served: Served) -> None:
    children = [pid for part in PARTS for pid in served.child_pids(part)]
    assert len(children) == len(PARTS)
    served.process.kill()
    served.process.wait()
    wait_for(lambda: not [pid for pid in children if alive(pid)], "orphans to stop", 15)


def test_a_flapping_part_does_not_stop_the_others(served: Served) -> None:
    """A worker that dies right after every start (five times in a row) is flagged
    flapping and restarted with backoff; SMTP and the other worker go on."""
    killed: list[int] = []
    while len(killed) < 5:
        wait_for(lambda: len(served.child_pids("worker-1")) > len(killed),
                 "worker-1 to be started again", timeout=60)
        pid = served.child_pids("worker-1")[-1]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    def alerted() -> bool:
        return any(e.get("level") == "ERROR" and e.get("part") == "worker-1"
                   for e in list(served.logs))

    wait_for(alerted, "the flapping alert")
    assert served.process.poll() is None, "xgate serve stopped"

    def flapping_on_healthz() -> bool:
        health = httpx.get(f"http://127.0.0.1:{served.web}/healthz", timeout=10).json()
        return bool(health.get("parts", {}).get("worker-1", {}).get("flapping"))

    wait_for(flapping_on_healthz, "/healthz to show worker-1 flapping")
    health = httpx.get(f"http://127.0.0.1:{served.web}/healthz", timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded"
    assert body["parts"]["smtp"] == {"state": "running", "flapping": False, "restarts": 0,
                                     "pid": served.child_pids("smtp")[0]}
    assert body["parts"]["worker-1"]["restarts"] >= 4
    metrics = httpx.get(f"http://127.0.0.1:{served.web}/metrics", timeout=10).text
    assert 'xgate_part_flapping{part="worker-1"} 1.0' in metrics
    assert 'xgate_part_flapping{part="worker-2"} 0.0' in metrics
    assert 'xgate_part_restarts_total{part="smtp"} 0.0' in metrics

    # Mail is still accepted and delivered (by worker-2, or worker-1 between its deaths).
    served.send("trotz des Ausfalls")
    wait_for(lambda: served.mailbox_count() == 1, "the message in the mailbox")
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=20) == 0
    assert all("Traceback" not in line for line in served.raw_stderr)


def test_a_restarted_smtp_part_takes_up_the_same_socket(served: Served) -> None:
    """The listening socket belongs to ``xgate serve``: while its SMTP part restarts, a
    client's connection waits in the backlog instead of being refused."""
    [first] = served.child_pids("smtp")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), "the SMTP part to be gone")
    # The part is dead and its restart a second away: the client waits, then is served.
    served.send("während des Neustarts")
    wait_for(lambda: len(served.child_pids("smtp")) == 2, "the restart in the log")
    wait_for(lambda: served.mailbox_count() == 1, "the message in the mailbox")


# -- start-up checks: refuse with one line, before anything says "serving" ------------------


def _serve_fails(config: Path, env: dict[str, str], *part: str) -> str:
    result = run_xgate("-c", config, "serve", *part, env=env, timeout=60)
    assert result.returncode != 0
    assert "serving" not in result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xgate: error: ")
    return lines[0]


@contextmanager
def _port_in_use() -> Iterator[int]:
    """A loopback port something listens on while in the block."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("part", [(), ("smtp",)], ids=["serve", "serve smtp"])
def test_serve_refuses_a_port_in_use(tmp_path: Path, part: tuple[str, ...]) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    with _port_in_use() as port:
        line = _serve_fails(config, {"XGATE_SMTP__INBOUND__PORT": str(port),
                                     "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
                                     "XGATE_WEB__PORT": str(free_port()),
                                     "XGATE_PORTAL__PORT": str(free_port())}, *part)
    assert line == f"xgate: error: smtp.inbound port 127.0.0.1:{port} is in use"


def test_serve_refuses_a_web_port_in_use(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    inbound = free_port()
    with _port_in_use() as port:
        line = _serve_fails(config, {"XGATE_SMTP__INBOUND__PORT": str(inbound),
                                     "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
                                     "XGATE_WEB__PORT": str(port),
                                     "XGATE_PORTAL__PORT": str(free_port())})
    assert line == f"xgate: error: web port 127.0.0.1:{port} is in use"
    # Nothing was left bound: the SMTP port bound before the web port is free again.
    with socket.socket() as again:
        again.bind(("127.0.0.1", inbound))


@pytest.mark.parametrize("part", [(), ("smtp",)], ids=["serve", "serve smtp"])
def test_serve_refuses_without_the_tls_files(tmp_path: Path, part: tuple[str, ...]) -> None:
    # "xgate init" without --demo writes no certificate.
    config = init_installation(tmp_path / "inst")
    cert = tmp_path / "inst" / "tls" / "cert.pem"
    assert not cert.exists()
    line = _serve_fails(config, {"XGATE_SMTP__INBOUND__PORT": str(free_port()),
                                 "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
                                 "XGATE_WEB__PORT": str(free_port())}, *part)
    assert line == f"xgate: error: tls.cert_file {cert}: no such file"
