"""``xgate init`` says where staff mail goes: a flag, a question on a terminal, the demo
catcher, or a placeholder and a warning. The real command in a subprocess; the question is
answered over a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from gateway.settings import RelayRoute, TlsPolicy, load_settings
from tests.support.cli import XGATE, clean_env, run_xgate

OFFICE = "jugendamt.example"


def _routes(config: Path) -> list[RelayRoute]:
    return load_settings(config).delivery.routes


def test_without_an_answer_init_writes_a_placeholder_and_warns(tmp_path: Path) -> None:
    result = run_xgate("init", tmp_path / "inst")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "inst" / "xgate.toml"
    assert "STAFF MAIL HAS NO ROUTE YET" in config.read_text()
    assert _routes(config) == []
    assert f"warning: no route for staff mail to {OFFICE}" in result.stderr
    assert "--staff-relay HOST:PORT" in result.stderr


def test_staff_relay_flag_routes_the_office_domain_inside(tmp_path: Path) -> None:
    result = run_xgate("init", tmp_path / "inst", "--staff-relay", "mail.intern.example:2500")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert f"staff mail for {OFFICE} goes to the internal mail server mail.intern.example:2500" \
        in result.stdout
    [route] = _routes(tmp_path / "inst" / "xgate.toml")
    assert (route.domain, route.host, route.port, route.internal) == (
        OFFICE, "mail.intern.example", 2500, True)
    assert route.tls == TlsPolicy.OPPORTUNISTIC


def test_staff_relay_port_defaults_to_25_and_ipv6_needs_brackets(tmp_path: Path) -> None:
    assert run_xgate("init", tmp_path / "a", "--staff-relay", "mail.intern.example"
                     ).returncode == 0
    assert _routes(tmp_path / "a" / "xgate.toml")[0].port == 25
    assert run_xgate("init", tmp_path / "b", "--staff-relay", "[fd00::25]:587").returncode == 0
    [route] = _routes(tmp_path / "b" / "xgate.toml")
    assert (route.host, route.port) == ("fd00::25", 587)


def test_a_bad_staff_relay_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = run_xgate("init", tmp_path / "inst", "--staff-relay", "mail server:25")
    assert result.returncode == 1
    assert result.stderr.startswith("xgate: error: --staff-relay: not a HOST:PORT")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "inst").exists()
    too_big = run_xgate("init", tmp_path / "inst", "--staff-relay", "mail.example:70000")
    assert too_big.returncode == 1 and "port must be 1 to 65535" in too_big.stderr


def _init_on_a_terminal(directory: Path, typed: bytes) -> tuple[int, str, str]:
    """``xgate init DIRECTORY`` with a pseudo-terminal as standard input, ``typed`` on it;
    (exit status, standard output, standard error)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([str(XGATE), "init", str(directory)],
                                   stdin=terminal, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=clean_env())
        # The line discipline keeps every typed line until the command reads it.
        os.write(controller, typed)
        out, err = process.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    return process.returncode, out, err


def test_init_asks_on_a_terminal(tmp_path: Path) -> None:
    # A wrong answer is asked again.
    code, out, err = _init_on_a_terminal(tmp_path / "inst",
                                         b"not a host!\nrelay.intern.example:587\n")
    assert code == 0, err
    assert f"Where does mail for staff ({OFFICE}) go?" in out
    assert "not a HOST:PORT: 'not a host!'" in out
    [route] = _routes(tmp_path / "inst" / "xgate.toml")
    assert (route.domain, route.host, route.port, route.internal) == (
        OFFICE, "relay.intern.example", 587, True)
    assert "warning" not in err


def test_an_empty_answer_on_the_terminal_leaves_the_placeholder(tmp_path: Path) -> None:
    code, _, err = _init_on_a_terminal(tmp_path / "inst", b"\n")
    assert code == 0, err
    assert _routes(tmp_path / "inst" / "xgate.toml") == []
    assert f"warning: no route for staff mail to {OFFICE}" in err


def test_demo_routes_the_office_and_everything_else_to_the_catcher(tmp_path: Path) -> None:
    result = run_xgate("init", tmp_path / "inst", "--demo", "--catcher-port", "2999")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert "demo catcher on 127.0.0.1:2999" in result.stdout
    settings = load_settings(tmp_path / "inst" / "xgate.toml")
    catcher = settings.demo.catcher
    assert (catcher.enabled, catcher.host, catcher.port) == (True, "127.0.0.1", 2999)
    assert [(r.domain, r.host, r.port, r.tls, r.internal) for r in settings.delivery.routes] == [
        (OFFICE, "127.0.0.1", 2999, TlsPolicy.NONE, True),
        ("*", "127.0.0.1", 2999, TlsPolicy.NONE, False)]


def test_an_existing_configuration_is_kept_and_its_missing_route_named(tmp_path: Path) -> None:
    assert run_xgate("init", tmp_path / "inst").returncode == 0
    added = run_xgate("-c", tmp_path / "inst" / "xgate.toml", "user", "add", "sb",
                      "--password-stdin", "--address", "sb@andere-stelle.example",
                      stdin="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    again = run_xgate("init", tmp_path / "inst", "--staff-relay", "mail.intern.example:25")
    assert again.returncode == 0, again.stderr
    assert "--staff-relay mail.intern.example:25 is not written into it" in again.stdout
    assert _routes(tmp_path / "inst" / "xgate.toml") == []
    assert f"warning: no route for staff mail to {OFFICE}:" in again.stderr
    assert ("warning: no route for staff mail to andere-stelle.example "
            "(sb@andere-stelle.example)") in again.stderr
