"""The outbound fallback ladder S/MIME -> OpenPGP -> portal -> hold, as one decision with a
reason for each rung, seen through the real ``xgate policy explain`` (the pipeline calls the
same gateway.policy.outbound.plan_recipient)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import Cli
from tests.support.gpg_partner import GpgPartner
from tests.test_keydir_certs import make_cert, pem

STAFF = "sachbearbeitung@jugendamt.example"
CITIZEN = "mutter@web.example"
ROUTES = '[delivery]\nroutes = [{domain = "*", host = "relay.invalid"}]\n'
PORTAL_ON = '[portal]\nenabled = true\npublic_url = "https://portal.kreis.example"\n'


def _explain(cli: Cli, to: str = CITIZEN) -> dict[str, object]:
    _, out, _ = cli("policy", "explain", "--from", STAFF, "--to", to, "--json")
    result: dict[str, object] = json.loads(out)
    return result


def _steps(result: dict[str, object]) -> list[str]:
    steps = result["steps"]
    assert isinstance(steps, list)
    return [str(s) for s in steps]


def _configure(cli: Cli, *sections: str, default: str | None = None) -> None:
    with cli.config.open("a") as fh:
        if default is not None:  # the fixture's file ends in [crypto]
            fh.write(f'unknown_partner_outbound = "{default}"\n')
        fh.write("".join(sections))


def test_default_policy_takes_the_portal_for_a_citizen_without_key(cli: Cli) -> None:
    _configure(cli, ROUTES, PORTAL_ON, default="either-or-portal")
    result = _explain(cli)
    steps = _steps(result)
    assert result["verdict"] == "portal-pickup"
    assert steps[1] == ("no partner record: the default policy for unknown partners is "
                        "either-or-portal")
    assert f"S/MIME not taken: no approved, valid S/MIME certificate for {CITIZEN}" in steps
    assert f"OpenPGP not taken: no approved, valid OpenPGP key for {CITIZEN}" in steps
    assert any(s.startswith("portal taken: the message waits for pickup at "
                            "https://portal.kreis.example") for s in steps)
    assert any("valid 14 days" in s for s in steps)
    assert not any(s.startswith("held") for s in steps)


def test_portal_switched_off_goes_on_to_hold(cli: Cli) -> None:
    _configure(cli, ROUTES, default="either-or-portal")
    result = _explain(cli)
    steps = _steps(result)
    assert result["verdict"] == "hold"
    assert ("portal not taken: the citizen portal is not enabled ([portal] enabled = false)"
            in steps)
    assert steps[-2].startswith("held: no usable key; needs an approved, valid S/MIME "
                                f"certificate or OpenPGP key for {CITIZEN}")


def test_portal_without_public_address_goes_on_to_hold(cli: Cli) -> None:
    _configure(cli, ROUTES, '[portal]\nenabled = true\npublic_url = ""\n',
               default="either-or-portal")
    result = _explain(cli)
    assert result["verdict"] == "hold"
    assert ("portal not taken: the citizen portal has no public address ([portal] public_url)"
            in _steps(result))


def test_either_does_not_fall_back_to_the_portal(cli: Cli) -> None:
    _configure(cli, ROUTES, PORTAL_ON)
    result = _explain(cli)
    assert result["verdict"] == "hold"
    assert "portal not taken: the policy either does not allow it" in _steps(result)


def test_partner_policy_allows_the_portal_where_the_default_does_not(cli: Cli) -> None:
    _configure(cli, ROUTES, PORTAL_ON)
    cli("partner", "add", "Eltern", "--domain", "web.example", "--outbound",
        "either-or-portal")
    result = _explain(cli)
    assert result["verdict"] == "portal-pickup"
    assert ("partner 'Eltern' (matched web.example) requires either-or-portal"
            in _steps(result))
    # Another domain keeps the default, which holds.
    assert _explain(cli, "vater@other.example")["verdict"] == "hold"


def test_a_key_takes_its_rung_before_the_portal(cli: Cli, tmp_path: Path) -> None:
    _configure(cli, ROUTES, PORTAL_ON, default="either-or-portal")
    with GpgPartner.create(tmp_path / "gpg") as gpg:
        fpr = gpg.generate(f"Mutter <{CITIZEN}>", "cv25519")
        key = gpg.export_public(fpr)
    cli("keys", "import", cli.file("mutter.asc", key), "--approve")
    result = _explain(cli)
    assert result["verdict"] == "encrypt-openpgp"
    assert any(s.startswith("OpenPGP to key ") for s in _steps(result))
    assert not any(s.startswith("portal") for s in _steps(result))

    cli("keys", "import", cli.file("mutter.pem", pem(make_cert(CITIZEN))), "--approve")
    result = _explain(cli)
    assert result["verdict"] == "encrypt-smime"
    assert not any(s.startswith(("OpenPGP", "portal")) for s in _steps(result))
