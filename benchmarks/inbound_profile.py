"""CPU per inbound stage for a signed-then-encrypted S/MIME message, and how often the email
package parses it: the worker's whole inbound pipeline (strip_result_headers ... deliver) on
the same messages, with a real clamd (the test signatures) and a migrated SQLite file.

For each message size (default ~100 KB of clear entity, as crypto_throughput.py makes them:
``openssl cms -sign -nodetach`` then ``-encrypt``) it runs the pipeline ``--rounds`` times
over ``--messages`` messages and prints, per stage, the median over rounds of the mean ms
per message (wall time in one process, so clamd's own work shows as waiting in ``scan``),
and the calls per message of the email package's parsers and of the raw structure check.
``--profile FILE`` writes a cProfile of one extra round (read it with ``python -m pstats``).

    python benchmarks/inbound_profile.py [--rounds 5] [--messages 20] [--sizes 102400]
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.crypto_throughput import ACTOR, MAILBOX, PARTNER, Sample, _now, smime_sample
from crypto.at_rest import MasterKey
from gateway.db import make_engine, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.keydir.keys import import_partner_keys
from gateway.keydir.models import KeySource
from gateway.keydir.own_keys import import_own_smime
from gateway.migrate import upgrade
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.driver import run_pipeline
from gateway.pipeline.pipelines import stages_for
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services, build_services
from gateway.settings import load_settings
from mailboxes.directory import add_mailbox
from tests.support.clamd import RunningClamd
from tests.support.smime_pki import Party, make_ca, make_person

# Counted from the profile, per message. A full parse: the pipeline's own
# (gateway.mime.parsed feeds the email package's feed parser), and any other made by
# email.parser, which has two parsebytes: BytesParser's (every parse, full or header-only)
# and BytesHeaderParser's (header-only, calling the first); a full parse is the difference.
# header_fetch_parse is policy.default parsing one header field's value (what a get() on a
# part costs).
_COUNTED = {
    "raw structure checks": ("parts.py", "raw_structure"),
    "header field values parsed (policy.default)": ("policy.py", "header_fetch_parse"),
    "partner_for": ("partners.py", "partner_for"),
}


def build(work: Path, clamd_socket: Path) -> tuple[Services, Party, Party, Party]:
    pki = work / "pki"
    pki.mkdir()
    ca = make_ca(pki, "ca")
    ours = make_person(pki, "hilfeplan", MAILBOX, ca)
    partner = make_person(pki, "partner", PARTNER, ca)
    var = work / "var"
    key_file = var / "keys" / "master.key"
    MasterKey.generate().write(key_file)
    settings = load_settings(
        None, data_dir=str(var), database={"url": f"sqlite:///{var / 'xgate.db'}"},
        storage={"master_key_file": str(key_file)},
        logging={"level": "WARNING", "json": False},
        scanning={"clamd_socket": str(clamd_socket)},
        crypto={"trust_anchors_file": str(ca.cert_pem), "gnupg_home": str(var / "gnupg")})
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    services = build_services(settings, transport=RecordingTransport())
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
        import_own_smime(s, services.master_key, MAILBOX,
                         ours.key_pem.read_bytes() + ours.cert_pem.read_bytes(),
                         actor=ACTOR, now=services.clock())
        import_partner_keys(s, partner.cert_pem.read_bytes(), actor=ACTOR,
                            source=KeySource.IMPORT, source_detail=ACTOR, approve=True,
                            now=services.clock())
    return services, ca, partner, ours


def stored(services: Services, sample: Sample) -> tuple[int, str]:
    """A queue row for ``sample`` (stages look up facts of their message by its id)."""
    with session_scope(services.sessions) as s:
        message = store_received(s, services.master_key, Envelope(
            Direction.INBOUND, PARTNER, [MAILBOX], sample.raw), actor=ACTOR,
            now=services.clock())
        return message.id, message.queue_id


def run_one(sample: Sample, row: tuple[int, str], services: Services,
            times: dict[str, float]) -> None:
    ctx = MessageContext(
        message_id=row[0], queue_id=row[1], direction=Direction.INBOUND, mail_from=PARTNER,
        received_at=_now(), attempt=1, raw=sample.raw, pending=[MAILBOX], worker=ACTOR)

    def timer(stage: str, seconds: float) -> None:
        times[stage] += seconds

    result = run_pipeline(ctx, stages_for(Direction.INBOUND), services, timer=timer)
    crypto = ctx.inbound_crypto
    # A failure path must not be timed by mistake.
    if (result.outcome is not None or crypto.encryption != "smime"
            or crypto.signature != "valid" or len(ctx.filings) != 1):
        raise AssertionError(f"not decrypted, verified and filed: {result} {crypto}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--sizes", default="102400")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    clamd = RunningClamd.start()
    try:
        with tempfile.TemporaryDirectory(prefix="xgate-profile-") as tmp:
            services, ca, partner, ours = build(Path(tmp), clamd.socket_path)
            try:
                for size in (int(s) for s in args.sizes.split(",")):
                    measure(services, Path(tmp), size, args, ca, partner, ours)
            finally:
                services.scanner.close()
    finally:
        clamd.close()


def measure(services: Services, work: Path, size: int, args: argparse.Namespace, ca: Party,
            partner: Party, ours: Party) -> None:
    samples = [smime_sample(work, size, i, ca, partner, ours) for i in range(args.messages)]
    rows = [stored(services, sample) for sample in samples]
    run_one(samples[0], rows[0], services, defaultdict(float))  # warm-up: imports, caches
    per_round: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        gc.collect()
        times: dict[str, float] = defaultdict(float)
        for sample, row in zip(samples, rows, strict=True):
            run_one(sample, row, services, times)
        for stage, seconds in times.items():
            per_round[stage].append(seconds / len(samples) * 1000)
        per_round["total"].append(sum(times.values()) / len(samples) * 1000)
    wire = sum(len(s.raw) for s in samples) // len(samples)
    print(f"\n## S/MIME signed+encrypted, clear entity ~{size // 1024} KB, {wire:,} B as "
          f"received; {args.messages} messages, median of {args.rounds} rounds")
    print("| stage | ms/message |\n|---|---|")
    for stage, values in per_round.items():
        print(f"| {stage} | {statistics.median(values):.2f} |")

    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for sample, row in zip(samples, rows, strict=True):
        run_one(sample, row, services, defaultdict(float))
    profile.disable()
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profile)
    print(f"\ncalls per message (one profiled round, {elapsed / len(samples) * 1000:.1f} ms "
          "per message under the profiler):")
    entries = stats.stats  # type: ignore[attr-defined]

    def calls(file_end: str, function: str) -> dict[int, int]:
        return {key[1]: value[1] for key, value in entries.items()
                if key[0].endswith(file_end) and key[2] == function}

    parses = calls("email/parser.py", "parsebytes")
    every, headers_only = (parses[min(parses)], parses[max(parses)]) if len(parses) == 2 \
        else (sum(parses.values()), 0)
    fed = sum(calls("gateway/mime/parsed.py", "_parse_fed").values())
    print(f"  email parser, full parses: {(fed + every - headers_only) / len(samples):.1f}")
    print(f"  email parser, header-only parses: {headers_only / len(samples):.1f}")
    for label, (file_end, function) in _COUNTED.items():
        total = sum(calls(file_end, function).values())
        print(f"  {label}: {total / len(samples):.1f}")
    if args.profile is not None:
        stats.dump_stats(str(args.profile))


if __name__ == "__main__":
    main()
