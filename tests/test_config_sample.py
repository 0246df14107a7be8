"""The commented sample configuration stays in step with the settings model, and bad
configuration is reported by key, in one line, without a traceback."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from gateway.cli.init import render_config, sample_config
from gateway.settings import ConfigError, Settings, load_settings
from tests.support.cli import run_xgate

# "# key = value" and "# [table]" lines are optional settings shown commented out.
_COMMENTED_SETTING = re.compile(r"^# ((?:\[\[?[\w.]+\]\]?)|(?:[A-Za-z_][\w-]* = .+))$")


def uncommented(text: str) -> str:
    """The sample with its commented-out settings switched on."""
    return "\n".join(_COMMENTED_SETTING.sub(r"\1", line) for line in text.splitlines())


# Settings typed as dict[str, str]: their keys are data (host names, aliases), not settings.
_FREE_FORM_TABLES = {"crypto.wkd_resolve", "consent.category_aliases"}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``Model``, ``list[Model]`` or ``Model | None``; None for scalars."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            model = _model_of(arg)
            if model is not None:
                return model
    return None


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.add(key)
        inner = _model_of(field.annotation)
        if inner is not None:
            keys |= model_keys(inner, key + ".")
    return keys


def toml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        key = prefix + name
        keys.add(key)
        if isinstance(value, dict) and key not in _FREE_FORM_TABLES:
            keys |= toml_keys(value, key + ".")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    keys |= toml_keys(item, key + ".")
    return keys


def test_commented_settings_are_recognised() -> None:
    text = "# Prose = not a setting?\n# [[delivery.routes]]\n# port = 25\n# A sentence.\n"
    assert uncommented(text).splitlines()[1:3] == ["[[delivery.routes]]", "port = 25"]


def test_sample_documents_every_setting_and_nothing_else() -> None:
    documented = toml_keys(tomllib.loads(uncommented(sample_config())))
    expected = model_keys(Settings)
    assert expected - documented == set(), "settings missing from sample_config.toml"
    assert documented - expected == set(), "sample_config.toml has keys the model lacks"


def test_every_setting_has_a_comment() -> None:
    lines = sample_config().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[A-Za-z_][\w-]* = ", line):
            above = lines[number - 1]
            # Either its own comment, or it continues a group explained just above it.
            assert above.startswith("#") or re.match(r"^[A-Za-z_][\w-]* = ", above), line


def test_sample_loads_as_is_and_with_every_option_on(tmp_path: Path) -> None:
    for name, text in (("plain.toml", sample_config()), ("all.toml", uncommented(sample_config()))):
        path = tmp_path / name
        path.write_text(text)
        settings = load_settings(path)
        assert settings.smtp.max_recipients == 100
    assert len(settings.delivery.routes) == 1
    assert settings.delivery.routes[0].internal is True


def test_sample_values_are_the_defaults(tmp_path: Path) -> None:
    """Paths differ on purpose (relative to the file); everything else is the default."""
    path = tmp_path / "xgate.toml"
    path.write_text(sample_config())
    paths: dict[str, object] = {"data_dir": True, "storage": True, "tls": True,
                                "database": True, "crypto": {"gnupg_home"},
                                "scanning": {"managed_socket"}}
    loaded = load_settings(path).model_dump(exclude=paths)
    assert loaded == Settings().model_dump(exclude=paths)


def test_rendered_config_points_at_an_absolute_database(tmp_path: Path) -> None:
    path = tmp_path / "xgate.toml"
    path.write_text(render_config(tmp_path / "xgate.db"))
    settings = load_settings(path)
    assert settings.database.url == f"sqlite:///{tmp_path / 'xgate.db'}"
    assert settings.resolve(settings.storage.master_key_file) == tmp_path / "keys/master.key"


def _write(tmp_path: Path, line: str) -> Path:
    """The sample with ``line`` in [smtp], replacing the line that sets the same key."""
    key = line.split(" = ")[0]
    text, replaced = re.subn(rf"(?m)^{key} = .*$", line, sample_config(), count=1)
    if not replaced:
        text = text.replace("[smtp]\n", "[smtp]\n" + line + "\n", 1)
    path = tmp_path / "xgate.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("extra", "key"), [
    ('max_recipients = "many"', "smtp.max_recipients"),
    ("max_recipientz = 5", "smtp.max_recipientz"),
    ("max_connections = 0", "smtp.max_connections"),
])
def test_bad_value_names_the_key(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(_write(tmp_path, extra))


def test_unknown_key_is_called_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.max_recipientz: unknown key"):
        load_settings(_write(tmp_path, "max_recipientz = 5"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "xgate.toml"
    path.write_text("[smtp\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "xgate.toml"
    path.write_text(sample_config())
    monkeypatch.setenv("XGATE_DATABASE__URL", "sqlite:////elsewhere/x.db")
    monkeypatch.setenv("XGATE_SMTP__INBOUND__PORT", "3025")
    monkeypatch.setenv("XGATE_LOGGING__JSON", "false")
    settings = load_settings(path)
    assert settings.database.url == "sqlite:////elsewhere/x.db"
    assert settings.smtp.inbound.port == 3025
    # Only the overridden key changes; its siblings keep the file's values.
    assert settings.smtp.inbound.host == "127.0.0.1"
    assert settings.logging.json_format is False


def test_bad_environment_value_names_the_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "xgate.toml"
    path.write_text(sample_config())
    monkeypatch.setenv("XGATE_SMTP__MAX_RECIPIENTS", "many")
    with pytest.raises(ConfigError, match=r"smtp\.max_recipients"):
        load_settings(path)


def _assert_one_clean_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(("extra", "key"), [
    ('max_recipients = "many"', "smtp.max_recipients"),
    ("max_recipientz = 5", "smtp.max_recipientz"),
])
def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path, extra: str, key: str) -> None:
    path = _write(tmp_path, extra)
    result = run_xgate("-c", path, "queue", "list")
    assert result.returncode != 0
    _assert_one_clean_line(result.stderr, key, str(path))


def test_cli_reports_a_missing_config_file(tmp_path: Path) -> None:
    result = run_xgate("-c", tmp_path / "absent.toml", "audit", "verify")
    assert result.returncode != 0
    _assert_one_clean_line(result.stderr, "configuration file not found", "absent.toml")


def test_cli_reports_a_bad_environment_value(tmp_path: Path) -> None:
    path = tmp_path / "xgate.toml"
    path.write_text(sample_config())
    result = run_xgate("-c", path, "queue", "list", env={"XGATE_WORKERS__COUNT": "lots"})
    assert result.returncode != 0
    _assert_one_clean_line(result.stderr, "workers.count")
    # Named where the value came from, not the file that does not contain it.
    assert "environment XGATE_WORKERS__COUNT" in result.stderr
    assert str(path) not in result.stderr


def test_cli_finds_its_config_through_the_environment(tmp_path: Path) -> None:
    result = run_xgate("db", "current", env={"XGATE_CONFIG": str(tmp_path / "via-env.toml")})
    assert result.returncode != 0
    _assert_one_clean_line(result.stderr, "via-env.toml")
