"""What the consent gate costs an outbound report, against the same pipeline without it.

The issue sets no speed goal for the gate; this measures that it stays a small part of a
report's way out, with a realistic register: many cases, several releases per case, some
with several versions. In every round and on the same messages it runs

    with      strip_result_headers, parse, route, consent, outbound_policy
    without   strip_result_headers, parse, route, outbound_policy        (the baseline)

as the worker runs them (the relay, signing, encryption and scanning are left out: they
are the same with and without the gate, and would only dilute the difference), and prints
per-message times, messages/s (medians over the rounds) and the ratio
baseline_time / time_with_gate (1.0 = free).

    python benchmarks/consent_gate.py [--rounds N] [--messages M] [--cases C] [--untagged]
                                      [--json]

``--untagged`` sends ordinary mail instead of tagged reports: no tag, no X-Xgate-* field,
from a mailbox not marked sensitive, but naming a case reference (Aktenzeichen) that is not
in the register in its subject and text. The gate then scans the text for references and
looks them up; every message must pass without a verdict.

One process, one core, a migrated SQLite database in a temporary directory.
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/consent_gate.py
    sys.path.insert(0, str(ROOT))

from crypto.at_rest import MasterKey
from gateway.consent.records import ReleaseInput, add_release, change_release
from gateway.db import make_engine, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.keydir.partners import add_partner
from gateway.migrate import upgrade
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Outcome
from gateway.pipeline.pipelines import STAGES
from gateway.policy.consent import RecipientRef, local_date
from gateway.services import Services, build_services
from gateway.settings import OutboundPolicy, RelayRoute, load_settings

STAFF = "sb@jugendamt.example"
PARTNER = "team@beratung.example"
WITH_GATE = ("strip_result_headers", "parse", "route", "consent", "outbound_policy")
WITHOUT_GATE = ("strip_result_headers", "parse", "route", "outbound_policy")


def case_of(index: int) -> str:
    return f"51.2-{index:05d}/2026"


def build(work: Path, cases: int) -> Services:
    key = work / "master.key"
    MasterKey.generate().write(key)
    settings = load_settings(None, data_dir=str(work), database={
        "url": f"sqlite:///{work / 'xgate.db'}"}, storage={"master_key_file": str(key)},
        crypto={"unknown_partner_outbound": "plaintext"}, logging={"level": "WARNING"})
    settings.delivery.routes = [RelayRoute(domain="*", host="relay.invalid")]
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    services = build_services(settings, transport=RecordingTransport())
    now = services.clock()
    today = local_date(now)
    with session_scope(services.sessions) as s:
        add_partner(s, "Beratungsstelle Nord", actor="bench", now=now,
                    patterns=["beratung.example"], outbound_policy=OutboundPolicy.PLAINTEXT,
                    non_sensitive=True)
        # Three releases per case: one covering the report, one for another category, and
        # one that was changed once (two versions).
        for index in range(cases):
            base = ReleaseInput(
                case=case_of(index), data_subjects=("L. M.",), grantor_name="A. M.",
                grantor_role="parent", categories=("psychologisches Gutachten",),
                recipients=(RecipientRef("partner", "Beratungsstelle Nord"),),
                purpose="Beratung", valid_from=today - timedelta(days=10),
                valid_until=today + timedelta(days=300))
            add_release(s, services.master_key, settings.consent, base, document=None,
                        actor="bench", now=now)
            add_release(s, services.master_key, settings.consent,
                        replace(base, categories=("Hilfeplan",)), document=None,
                        actor="bench", now=now)
            school = replace(base, categories=("Schulbericht",))
            changed = add_release(s, services.master_key, settings.consent, school,
                                  document=None, actor="bench", now=now)
            change_release(s, services.master_key, settings.consent, changed.release.id,
                           replace(school, note="verlängert"), document=None, actor="bench",
                           now=now)
    return services


def message(index: int, cases: int, *, untagged: bool = False) -> bytes:
    if untagged:
        # A reference of the office's form that the register does not know.
        unknown = f"51.2-{cases + index:05d}/2026"
        subject = f"Terminabsprache (AZ {unknown})"
        text = f"Sehr geehrte Damen und Herren,\r\n\r\nzum Fall {unknown} ein Termin.\r\n"
    else:
        subject = f"[AZ {case_of(index % cases)}][Gutachten] Bericht {index}"
        text = "Sehr geehrte Damen und Herren,\r\n\r\nanbei das Gutachten.\r\n"
    body = (text * 400).encode()
    return (f"From: {STAFF}\r\nTo: {PARTNER}\r\nSubject: {subject}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + body


def run(services: Services, raws: list[bytes], names: Sequence[str], *,
        verdict: str | None = "allow") -> float:
    """Seconds for all messages through the named stages; every message must pass, with
    ``verdict`` from the gate (None: the gate must not have taken it for a report)."""
    stages = [STAGES[n] for n in names]
    start = time.perf_counter()
    for number, raw in enumerate(raws):
        ctx = MessageContext(message_id=number + 1, queue_id=f"B{number}",
                             direction=Direction.OUTBOUND, mail_from=STAFF,
                             received_at=services.clock(), attempt=1, raw=raw,
                             pending=[PARTNER])
        for stage in stages:
            try:
                stage.run(ctx, services)
            except Outcome as exc:
                raise SystemExit(f"benchmark message {number} stopped: {exc.reason}") from None
        if "consent" in names and ctx.facts.get("consent:verdict") != verdict:
            raise SystemExit(f"benchmark message {number}: verdict "
                             f"{ctx.facts.get('consent:verdict')}, not {verdict}: {ctx.facts}")
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--untagged", action="store_true",
                        help="ordinary mail naming an unknown case reference, not reports")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    verdict = None if args.untagged else "allow"
    with tempfile.TemporaryDirectory(prefix="xgate-consent-bench-") as tmp:
        services = build(Path(tmp), args.cases)
        raws = [message(i, args.cases, untagged=args.untagged) for i in range(args.messages)]
        run(services, raws[:20], WITH_GATE, verdict=verdict)  # warm caches and the pool
        with_gate: list[float] = []
        without: list[float] = []
        for _ in range(args.rounds):
            without.append(run(services, raws, WITHOUT_GATE))
            with_gate.append(run(services, raws, WITH_GATE, verdict=verdict))
        services.sessions.kw["bind"].dispose()
    n = args.messages
    result: dict[str, Any] = {
        "messages": n, "kind": "untagged" if args.untagged else "tagged",
        "rounds": args.rounds, "cases": args.cases,
        "releases": args.cases * 3, "versions": args.cases * 4,
        "ms_per_message_without": statistics.median(without) / n * 1000,
        "ms_per_message_with": statistics.median(with_gate) / n * 1000,
        "ratio": statistics.median(without) / statistics.median(with_gate),
    }
    result["gate_ms_per_message"] = (result["ms_per_message_with"]
                                     - result["ms_per_message_without"])
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{n} {result['kind']} messages x {args.rounds} rounds; register: "
              f"{args.cases} cases, "
              f"{result['releases']} releases, {result['versions']} versions")
        print(f"  without the gate  {result['ms_per_message_without']:.2f} ms/message "
              f"({1000 / result['ms_per_message_without']:.0f}/s)")
        print(f"  with the gate     {result['ms_per_message_with']:.2f} ms/message "
              f"({1000 / result['ms_per_message_with']:.0f}/s)")
        print(f"  the gate costs    {result['gate_ms_per_message']:.2f} ms/message; "
              f"ratio baseline/with = {result['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
