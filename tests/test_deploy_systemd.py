"""The systemd units in deploy/systemd: they parse, they set what the README promises
(restart for ever, hardening, the data directory writable), and they run commands that
``xgate serve`` accepts. With ``systemd-analyze`` installed they are also verified by it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.serve import PARTS

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
SERVICES = ["xgate.service", "xgate-smtp.service", "xgate-worker@.service", "xgate-web.service"]
DATA_DIR = "/var/lib/xgate"
INSTALLED_XGATE = "/opt/xgate/.venv/bin/xgate"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """systemd's unit syntax: [Section], Key=Value, # and ; comments, repeatable keys,
    a trailing backslash continues a line."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals and key.strip() and current is not None, f"{path.name}:{number}: {raw}"
        current.setdefault(key.strip(), []).append(value.strip())
    assert not pending, f"{path.name}: ends in a continuation"
    return sections


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def test_every_unit_file_is_covered() -> None:
    assert sorted(p.name for p in UNITS.iterdir()) == sorted([*SERVICES, "xgate.target"])


@pytest.mark.parametrize("name", SERVICES)
def test_services_restart_for_ever_and_are_hardened(name: str) -> None:
    unit = parse_unit(UNITS / name)
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Unit", "StartLimitIntervalSec") == "0"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec").rstrip("s").isdigit()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "ProtectHome": "yes", "PrivateDevices": "yes",
                       "User": "xgate", "UMask": "0077"}.items():
        assert one(unit, "Service", key) == value, key
    assert DATA_DIR in one(unit, "Service", "ReadWritePaths").split()
    # Nothing but the listeners may bind low ports.
    listens = name in ("xgate.service", "xgate-smtp.service")
    capabilities = one(unit, "Service", "CapabilityBoundingSet")
    assert capabilities == ("CAP_NET_BIND_SERVICE" if listens else "")


@pytest.mark.parametrize("name", SERVICES)
def test_services_run_a_part_xgate_serve_accepts(name: str) -> None:
    unit = parse_unit(UNITS / name)
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0] == INSTALLED_XGATE
    assert argv[1:4] == ["-c", f"{DATA_DIR}/xgate.toml", "serve"]
    part = argv[4:]
    assert part == [] if name == "xgate.service" else (len(part) == 1 and part[0] in PARTS)
    if name != "xgate.service":
        assert one(unit, "Unit", "PartOf") == "xgate.target"
        assert one(unit, "Install", "WantedBy") == "xgate.target"


def test_the_target_wants_each_part() -> None:
    target = parse_unit(UNITS / "xgate.target")
    wanted = one(target, "Unit", "Wants").split()
    assert wanted == ["xgate-smtp.service", "xgate-worker@1.service", "xgate-worker@2.service",
                      "xgate-web.service"]
    assert one(target, "Unit", "Conflicts") == "xgate.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    # verify checks that ExecStart is executable: point it at this checkout's xgate.
    xgate = Path(sys.executable).with_name("xgate")
    for path in UNITS.iterdir():
        text = path.read_text().replace(INSTALLED_XGATE, str(xgate))
        names = ([path.name.replace("@.", f"@{n}.") for n in (1, 2)] if "@." in path.name
                 else [path.name])
        for unit_name in names:
            (tmp_path / unit_name).write_text(text)
    files = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(["systemd-analyze", "verify", *files], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
