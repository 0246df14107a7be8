"""The demo catcher: the gateway relays a notice to it over real SMTP on loopback, it keeps
the message sealed, and ``xgate demo mail list | show`` prints it. End to end through
``xgate init --demo`` and ``xgate serve``; and ``xgate serve`` warns when staff mail has no
route."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crypto.at_rest import MasterKey
from crypto.errors import SealError
from gateway.clock import FakeClock
from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.demo import mail as demo_mail
from gateway.demo.catcher import BackgroundCatcher
from gateway.models import Direction, MessageState
from gateway.services import Services, build_services
from gateway.settings import OutboundPolicy, RelayRoute, Settings, TlsPolicy, load_settings
from tests.support.clamd import shared_clamd
from tests.support.cli import XGATE, Cli, clean_env, run_xgate
from tests.support.pipeline import bounces, drain, enqueue, load_message
from tests.support.ports import free_port

STAFF = "sb@jugendamt.example"
PARTNER = "fachdienst@partner.example"
REPORT = (f"From: {STAFF}\r\nTo: {PARTNER}\r\nSubject: Hilfeplan\r\n\r\n"
          "Vertraulicher Inhalt\r\n").encode()


@pytest.fixture
def catcher(cli: Cli) -> Iterator[tuple[str, int]]:
    """The catcher of the ``cli`` fixture's installation, on a free port."""
    settings = load_settings(cli.config, demo={"catcher": {"port": 0, "enabled": True}})
    running = BackgroundCatcher(settings)
    address = running.start()
    yield address
    running.stop()


@pytest.fixture
def demo_office(settings: Settings, clock: FakeClock, catcher: tuple[str, int]
                ) -> Iterator[Services]:
    """Routes as "xgate init --demo" writes them: the office and the rest to the catcher."""
    host, port = catcher
    settings.crypto.unknown_partner_outbound = OutboundPolicy.EITHER
    settings.delivery.routes = [
        RelayRoute(domain="jugendamt.example", host=host, port=port, tls=TlsPolicy.NONE,
                   internal=True),
        RelayRoute(domain="*", host=host, port=port, tls=TlsPolicy.NONE)]
    svc = build_services(settings, transport=SmtpRelayTransport(settings), clock=clock)
    yield svc
    svc.sessions.kw["bind"].dispose()


def test_a_staff_notice_is_caught_sealed_and_shown(demo_office: Services, cli: Cli) -> None:
    qid = enqueue(demo_office, [PARTNER], REPORT, mail_from=STAFF,
                  direction=Direction.OUTBOUND)
    drain(demo_office)
    assert load_message(demo_office, qid).state == MessageState.HELD
    [notice] = bounces(demo_office)
    assert load_message(demo_office, notice.queue_id).state == MessageState.DELIVERED

    _, listed, _ = cli("demo", "mail", "list")
    [line] = [li for li in listed.splitlines() if li.strip().startswith("1 ")]
    assert f"<> -> {STAFF}: Nachricht zurückgehalten: Referenz {qid}" in line
    _, shown, _ = cli("demo", "mail", "show", "1")
    assert f"envelope <> -> {STAFF}" in shown
    assert "--- text/plain ---" in shown
    assert f"Ihre Nachricht an {PARTNER} (Referenz {qid}) wurde vom Mail-Gateway" in shown
    assert "--- English ---" in shown
    _, raw, _ = cli("demo", "mail", "show", "1", "--raw")
    assert "Content-Transfer-Encoding: quoted-printable" in raw

    # On disk only sealed: neither the text nor the reference is readable there.
    files = list((cli.tmp / "demo-mail").iterdir())
    assert [f.name for f in files] == ["000001.sealed"]
    stored = files[0].read_bytes()
    for plain in (qid.encode(), STAFF.encode(), b"Mail-Gateway", b"Message held"):
        assert plain not in stored


def test_a_caught_message_opens_only_with_its_key_and_under_its_number(tmp_path: Path) -> None:
    master = MasterKey.generate()
    number = demo_mail.store(tmp_path, master, mail_from="", rcpt_tos=[STAFF],
                             content=b"Subject: x\r\n\r\ngeheim\r\n")
    assert demo_mail.read(tmp_path, master, number).content == b"Subject: x\r\n\r\ngeheim\r\n"
    with pytest.raises(SealError):
        demo_mail.read(tmp_path, MasterKey.generate(), number)
    (tmp_path / "000001.sealed").rename(tmp_path / "000002.sealed")
    with pytest.raises(SealError):
        demo_mail.read(tmp_path, master, 2)
    assert demo_mail.store(tmp_path, master, mail_from="", rcpt_tos=[STAFF], content=b"") == 3


def test_show_of_an_unknown_number_is_one_line(cli: Cli) -> None:
    assert "no mail caught" in cli("demo", "mail", "list")[1]
    assert cli.fails("demo", "mail", "show", "7").startswith("no caught message 7")


# -- xgate serve ------------------------------------------------------------------------------


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Serving:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.lines: list[str] = []
        self.logs: list[dict[str, object]] = []
        self.process = subprocess.Popen([str(XGATE), "-c", str(config), "serve"],
                                        env=clean_env(env), text=True, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.logs.append(json.loads(line))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _ports() -> dict[str, str]:
    return {"XGATE_SMTP__INBOUND__PORT": str(free_port()),
            "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
            "XGATE_WEB__PORT": str(free_port()),
            "XGATE_PORTAL__PORT": str(free_port()),
            "XGATE_LOGGING__JSON": "true",
            "XGATE_WORKERS__POLL_INTERVAL_SECONDS": "0.1",
            "XGATE_WORKERS__PROCESSES": "1",
            # The session's clamd, not a managed one per test.
            "XGATE_SCANNING__CLAMD_SOCKET": str(shared_clamd().socket_path)}


@pytest.mark.slow
def test_make_run_shape_a_held_report_notice_arrives_at_the_catcher(tmp_path: Path) -> None:
    catcher_port = free_port()
    init = run_xgate("init", tmp_path / "inst", "--demo", "--catcher-port", str(catcher_port))
    assert init.returncode == 0, init.stderr
    password = next(li for li in init.stdout.splitlines()
                    if "demo staff user" in li).rsplit(" ", 1)[1]
    config = tmp_path / "inst" / "xgate.toml"
    env = _ports()
    served = Serving(config, env)
    try:
        _wait(lambda: any(li.startswith("  demo catcher") for li in served.lines), "the banner")
        assert any(f"demo catcher    on 127.0.0.1:{catcher_port}" in li for li in served.lines)
        _wait(lambda: any(str(e.get("message")).startswith("demo catcher listening")
                          for e in served.logs), "the catcher")
        assert not any("WARNING" in li for li in served.lines)

        # The demo user sends a report to a partner with no key: held, and the notice to
        # the demo user's own address goes to the catcher.
        context = ssl.create_default_context(cafile=str(tmp_path / "inst" / "tls" / "cert.pem"))
        context.check_hostname = False
        port = int(env["XGATE_SMTP__SUBMISSION__PORT"])
        _wait(lambda: _listening(port), "the submission listener")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.starttls(context=context)
            smtp.login("demo", password)
            smtp.sendmail("demo@jugendamt.example", [PARTNER],
                          REPORT.replace(STAFF.encode(), b"demo@jugendamt.example"))

        def caught() -> str:
            return run_xgate("-c", config, "demo", "mail", "list", env=env).stdout

        _wait(lambda: "Nachricht zurückgehalten" in caught(), "the notice at the catcher")
        # The catcher may have the receipts for init's demo mail too: find the notice's N.
        [notice] = [li for li in caught().splitlines() if "Nachricht zurückgehalten" in li]
        assert "<> -> demo@jugendamt.example: Nachricht zurückgehalten: Referenz" in notice
        shown = run_xgate("-c", config, "demo", "mail", "show", notice.split()[0], env=env)
        assert shown.returncode == 0, shown.stderr
        assert f"Ihre Nachricht an {PARTNER}" in shown.stdout
    finally:
        status = served.stop()
    assert status == 0


@pytest.mark.slow
def test_serve_warns_when_staff_mail_has_no_route(tmp_path: Path) -> None:
    assert run_xgate("init", tmp_path / "inst").returncode == 0
    # Without --demo there is no TLS certificate, and xgate serve refuses to start SMTP
    # listeners without one; the warning does not need them.
    served = Serving(tmp_path / "inst" / "xgate.toml", {
        **_ports(), "XGATE_SMTP__INBOUND__ENABLED": "false",
        "XGATE_SMTP__SUBMISSION__ENABLED": "false"})
    try:
        _wait(lambda: any("WARNING" in li for li in served.lines), "the warning")
        assert any(li.startswith("  WARNING: no route for staff mail to jugendamt.example:")
                   for li in served.lines)
        _wait(lambda: any(e.get("logger") == "gateway.delivery.staff_routes"
                          for e in served.logs), "the log line")
        [logged] = [e for e in served.logs if e.get("logger") == "gateway.delivery.staff_routes"]
        assert logged["level"] == "WARNING"
        assert "no route for staff mail to jugendamt.example" in str(logged["message"])
    finally:
        assert served.stop() == 0


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False
