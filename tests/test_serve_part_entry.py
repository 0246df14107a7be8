"""The lean entry ``xgate serve`` starts its parts with (gateway.serve.part): real processes.

A worker or SMTP process started through it holds only what its part uses (not alembic, not
the web app, not pyotp; a worker not aiosmtpd), and it refuses a database at another schema
revision than the one the supervisor was started for, with the CLI's one line.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

import gateway.schema_check
from gateway.cli.common import head_revision
from gateway.db import make_engine
from gateway.migrate import current_revision, downgrade
from gateway.operator_errors import CliError
from gateway.schema_check import shipped_head, stored_revision
from gateway.serve.part import SCHEMA_HEAD_ENV, check_schema, child_argv
from gateway.settings import Settings
from tests.support.clamd import shared_clamd
from tests.support.cli import clean_env, init_installation, installation_settings
from tests.support.ports import free_port
from tests.support.sockets import greets
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

# Imported by the whole xgate command, never needed by these parts.
NOT_IN_ANY_PART = ("alembic", "mako", "pyotp", "fastapi", "starlette", "jinja2",
                   "uvicorn", "admin_ui", "gateway.cli", "gateway.portal.app")
NOT_IN_THE_WORKER = ("aiosmtpd", "gateway.smtp.server", "gateway.demo.catcher")

# Runs the entry exactly as the supervisor does (python -m gateway.serve.part ...), and on the
# way out writes the names of every module the process imported.
RECORDING_ENTRY = """
import atexit, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv[0] = "gateway.serve.part"
runpy.run_module("gateway.serve.part", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installation made by xgate init --demo (SQLite at the head revision, a TLS
    certificate for the SMTP part, demo mail for the worker); its config file."""
    return init_installation(tmp_path_factory.mktemp("part") / "inst", "--demo")


def copy_of(config: Path, tmp_path: Path) -> Path:
    """A copy of the installation, to change (init writes the database's absolute path)."""
    copy = shutil.copytree(config.parent, tmp_path / "inst") / config.name
    copy.write_text(copy.read_text().replace(str(config.parent), str(copy.parent)))
    assert str(config.parent) not in copy.read_text()
    return copy


def schema_head(config: Path) -> str:
    engine = make_engine(installation_settings(config))
    try:
        head = head_revision(engine)
    finally:
        engine.dispose()
    assert head is not None
    return head


def part_env(config: Path, **overrides: str) -> dict[str, str]:
    return clean_env({
        SCHEMA_HEAD_ENV: schema_head(config),
        "XGATE_SCANNING__CLAMD_SOCKET": str(shared_clamd().socket_path),
        "XGATE_SMTP__INBOUND__PORT": str(free_port()),
        "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
        # init --demo switches the portal and the demo catcher on: free ports for them too.
        "XGATE_PORTAL__PORT": str(free_port()),
        "XGATE_DEMO__CATCHER__PORT": str(free_port()),
        **overrides})


def modules_of_running_part(config: Path, part: str, ready: Callable[[list[str]], bool],
                            env: dict[str, str], tmp_path: Path) -> set[str]:
    """Start ``part`` through the lean entry, wait until ``ready(stderr lines)``, stop it with
    SIGTERM as the supervisor does; the modules it had imported."""
    out = tmp_path / f"{part}.modules"
    argv = child_argv(config, part)
    assert argv[:3] == [sys.executable, "-m", "gateway.serve.part"]
    process = subprocess.Popen([sys.executable, "-c", RECORDING_ENTRY, str(out), *argv[3:]],
                               env=env, text=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        lines.extend(process.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: ready(lines) or process.poll() is not None, timeout=60,
                   what=f"the {part} part")
        assert process.poll() is None, "".join(lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    return set(out.read_text().split("\n"))


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or modules) are among ``modules``."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_a_worker_started_through_the_entry_imports_only_what_it_uses(
        installation: Path, tmp_path: Path) -> None:
    modules = modules_of_running_part(
        installation, "worker", lambda lines: any("worker(s) running" in li for li in lines),
        part_env(installation), tmp_path)
    # It really ran the worker part (so the check below can fail)...
    assert {"gateway.pipeline.worker", "gateway.services", "gateway.serve.parts"} <= modules
    # ... without what only the xgate command or other parts need.
    assert imported(modules, NOT_IN_ANY_PART + NOT_IN_THE_WORKER) == []


def test_an_smtp_part_started_through_the_entry_imports_only_what_it_uses(
        installation: Path, tmp_path: Path) -> None:
    env = part_env(installation)
    port = int(env["XGATE_SMTP__INBOUND__PORT"])
    modules = modules_of_running_part(installation, "smtp", lambda _: greets(port), env,
                                      tmp_path)
    assert {"gateway.smtp.server", "aiosmtpd", "gateway.serve.parts"} <= modules
    assert imported(modules, NOT_IN_ANY_PART) == []


def run_entry(config: Path, part: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(child_argv(config, part), env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("part", ["worker", "smtp"])
def test_a_part_refuses_a_database_at_an_older_revision(installation: Path, tmp_path: Path,
                                                        part: str) -> None:
    config = copy_of(installation, tmp_path)
    env = part_env(config)  # the head the supervisor was started for
    settings = installation_settings(config)
    engine = make_engine(settings)
    try:
        # Someone ran "xgate db downgrade -1" under a running serve.
        downgrade(engine, "-1")
        with engine.connect() as connection:
            older = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert older is not None and older != env[SCHEMA_HEAD_ENV]

    result = run_entry(config, part, env)
    assert result.returncode == 1
    assert result.stderr == (f"xgate: error: the database schema is at revision {older} but "
                             f"this version needs {env[SCHEMA_HEAD_ENV]} (run 'xgate db "
                             "upgrade')\n")


def test_a_part_refuses_a_database_without_the_schema(installation: Path,
                                                      tmp_path: Path) -> None:
    config = copy_of(installation, tmp_path)
    env = part_env(config)
    engine = make_engine(installation_settings(config))
    try:
        downgrade(engine, "base")
    finally:
        engine.dispose()
    result = run_entry(config, "worker", env)
    assert result.returncode == 1
    assert result.stderr == ("xgate: error: the database has no xgate schema yet (run 'xgate "
                             "db upgrade')\n")


def test_a_part_refuses_a_missing_database_and_a_missing_config(installation: Path,
                                                               tmp_path: Path) -> None:
    config = copy_of(installation, tmp_path)
    env = part_env(config)
    database = tmp_path / "inst" / "xgate.db"
    assert database.exists()
    database.rename(tmp_path / "moved.db")
    result = run_entry(config, "worker", env)
    assert (result.returncode, result.stderr) == (
        1, f"xgate: error: database not found: {database} (run 'xgate db upgrade' to create "
           "it)\n")
    # Not created by the attempt (SQLite would make an empty file).
    assert not database.exists()

    missing = tmp_path / "nowhere" / "xgate.toml"
    result = run_entry(missing, "worker", env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"xgate: error: configuration file not found: {missing}")


def test_the_entry_is_for_the_supervisor_only(installation: Path) -> None:
    """Without the head revision the supervisor passes, a part cannot check its database
    without alembic; run alone, it is started as ``xgate serve PART``."""
    env = part_env(installation)
    del env[SCHEMA_HEAD_ENV]
    result = run_entry(installation, "worker", env)
    assert result.returncode == 1
    assert f"{SCHEMA_HEAD_ENV} is not set" in result.stderr
    assert "xgate serve worker" in result.stderr


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name (field 2) may hold spaces: the parent pid follows its ")".
            if int(stat[stat.rindex(")") + 2:].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def test_xgate_serve_passes_the_head_and_starts_its_parts_through_the_entry(
        installation: Path, tmp_path: Path) -> None:
    """The supervisor's children run the lean entry with the head it checked (read from the
    children's own command lines and environments in /proc)."""
    config = copy_of(installation, tmp_path)
    env = part_env(config, XGATE_WEB__PORT=str(free_port()),
                   XGATE_WORKERS__PROCESSES="1")
    head = env.pop(SCHEMA_HEAD_ENV)
    xgate = Path(sys.executable).with_name("xgate")
    output = tmp_path / "serve.out"
    with output.open("wb") as sink:
        process = subprocess.Popen([str(xgate), "-c", str(config), "serve"], env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        # Fails at once, with what serve said, if it exits instead of serving.
        wait_until(lambda: process.poll() is not None
                   or greets(int(env["XGATE_SMTP__INBOUND__PORT"])),
                   timeout=60, what="the SMTP part", detail=output.read_text)
        assert process.poll() is None, output.read_text()
        wait_until(lambda: len(children_of(process.pid)) == 5, timeout=60, what="every part",
                   detail=output.read_text)
        children = {}
        for pid in children_of(process.pid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            children[argv[-1].decode()] = (argv, environ)
        assert set(children) == {"smtp", "worker", "web", "portal", "catcher"}, \
            output.read_text()
        for part in children:
            argv, environ = children[part]
            assert argv[1:3] == [b"-m", b"gateway.serve.part"]
            assert f"{SCHEMA_HEAD_ENV}={head}".encode() in environ
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0, output.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_sla_passes_import_the_holiday_calendars_only_for_a_deadline() -> None:
    """Every worker's scheduler imports the SLA passes; the ``holidays`` package (about 3 MiB,
    and 8 more once asked) only comes with the first deadline computed."""
    script = (
        "import sys\n"
        "import mailboxes.scheduler.runner, mailboxes.service_levels.jobs\n"
        "print('holidays' in sys.modules)\n"
        "from datetime import date\n"
        "from mailboxes.service_levels.business_hours import _is_holiday\n"
        "print(_is_holiday('BY', date(2026, 12, 25)), 'holidays' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == ["False", "True", "True"]


def test_the_revision_read_without_alembic_is_alembics(settings: Settings) -> None:
    """On both backends: at the head, one revision down, and without alembic's table."""
    engine = make_engine(settings)
    try:
        head = head_revision(engine)
        assert head is not None
        assert stored_revision(engine) == current_revision(engine) == head
        check_schema(settings, head)

        downgrade(engine, "-1")
        older = current_revision(engine)
        assert older is not None and older != head
        assert stored_revision(engine) == older
        with pytest.raises(CliError, match=f"at revision {older} but this version needs {head}"):
            check_schema(settings, head)

        with engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
        assert stored_revision(engine) is None
        with pytest.raises(CliError, match="has no xgate schema yet"):
            check_schema(settings, head)
    finally:
        engine.dispose()


def test_the_head_read_from_the_file_names_is_alembics(installation: Path) -> None:
    # The part compares its supervisor's head with the migrations shipped beside its code,
    # read from their file names: revision "NNNN" in versions/NNNN_*.py, each one's.
    engine = make_engine(installation_settings(installation))
    try:
        assert shipped_head() == head_revision(engine)
    finally:
        engine.dispose()
    versions = Path(gateway.schema_check.__file__).parent / "migrations" / "versions"
    for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py"):
        assert re.search(rf"^revision = [\"']{path.name[:4]}[\"']$", path.read_text(),
                         re.MULTILINE), path.name


def test_a_part_of_newer_code_than_its_supervisor_refuses(installation: Path) -> None:
    """xgate upgraded on disk under a running serve: a restarted part would run the new code
    against the old head it was given; it refuses until serve is restarted."""
    env = part_env(installation)
    head = env[SCHEMA_HEAD_ENV]
    env[SCHEMA_HEAD_ENV] = f"{int(head) - 1:04d}"
    result = run_entry(installation, "worker", env)
    assert result.returncode == 1
    assert result.stderr == (
        f"xgate: error: this xgate's code needs schema revision {head} but xgate serve was "
        f"started for {env[SCHEMA_HEAD_ENV]}: xgate was upgraded under a running serve; "
        "restart it (after 'xgate db upgrade')\n")
