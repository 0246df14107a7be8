"""``xgate serve`` with the citizen portal: its own part on its own listener, alone or in the
supervised tree, and refused with one line when it is switched off."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gateway.cli.demo import DEMO_MAILBOX
from tests.support.cli import XGATE, clean_env, init_installation, run_xgate
from tests.support.ports import free_port

pytestmark = pytest.mark.slow


def _portal_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok"
    except httpx.HTTPError:
        return False


def _wait_for_portal(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while not _portal_answers(port):
        if process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(f"xgate serve exited early: {err[-2000:]}")
        assert time.monotonic() < deadline, "the portal never answered"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return out, err


def test_serve_portal_alone_answers_on_its_own_port(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    port = free_port()
    # A topic filed into the demo's shared mailbox, which exists.
    env = clean_env({"XGATE_PORTAL__ENABLED": "true", "XGATE_PORTAL__PORT": str(port),
                     "XGATE_PORTAL__TOPICS": json.dumps([{"name": "Kita",
                                                          "mailbox": DEMO_MAILBOX}])})
    process = subprocess.Popen([str(XGATE), "-c", str(config), "serve", "portal"], env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_portal(process, port)
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "server" not in answer.headers
        assert "<option value=\"Kita\"" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        _out, err = _stop(process)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (as -SIGTERM).
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert "Traceback" not in err


def test_serve_runs_the_portal_as_a_part_of_its_own_when_enabled(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    port, web = free_port(), free_port()
    env = clean_env({"XGATE_PORTAL__ENABLED": "true", "XGATE_PORTAL__PORT": str(port),
                     "XGATE_WEB__PORT": str(web),
                     "XGATE_SMTP__INBOUND__PORT": str(free_port()),
                     "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
                     # The demo's catcher too: another test may run serve beside this one.
                     "XGATE_DEMO__CATCHER__PORT": str(free_port())})
    process = subprocess.Popen([str(XGATE), "-c", str(config), "serve"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_portal(process, port)
        # The staff app stays on its own port; the portal is not it.
        assert httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5).status_code in (200, 503)
        assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 404
    finally:
        out, err = _stop(process)
    assert f"portal          on http://127.0.0.1:{port}/ (the citizen portal)" in out
    assert "xgate stopped" in out
    assert "Traceback" not in err


def test_serve_portal_is_refused_when_switched_off(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    # The demo switches it on; the environment switches it off again.
    result = run_xgate("-c", config, "serve", "portal",
                       env={"XGATE_PORTAL__ENABLED": "false",
                            "XGATE_PORTAL__PORT": str(free_port())}, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "xgate: error: portal.enabled is false: the citizen portal is switched off")


def test_serve_portal_is_refused_when_a_topic_has_no_shared_mailbox(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    topics = json.dumps([{"name": "Kita", "mailbox": "niemand@jugendamt.example"}])
    result = run_xgate("-c", config, "serve", "portal",
                       env={"XGATE_PORTAL__ENABLED": "true", "XGATE_PORTAL__TOPICS": topics,
                            "XGATE_PORTAL__PORT": str(free_port())}, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "xgate: error: portal.topics: 'Kita' files into niemand@jugendamt.example, which is "
        "not a shared mailbox (xgate mailbox add)")
