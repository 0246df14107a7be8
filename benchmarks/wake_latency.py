"""Latency from the 250 to the mailbox at a light, steady load: workers woken vs polling.

``xgate serve`` (SQLite, the demo's configuration, 2 worker processes) is offered 10 KB
messages at a fixed rate over SMTP (default 10 a second for 30 s) and each message's time from
its 250 to being filed in the shared mailbox is measured, once with the workers woken when
intake commits (gateway.queue.wake, the default) and once, as the baseline in the same run,
with ``workers.wake = false`` (the old poll every workers.poll_interval_seconds).

"Filed" is the message's ``updated_at`` in the queue when it is recorded delivered: the time
the worker's recording transaction took (its commit follows within milliseconds). Each
message is paired with its own row by the queue id in the 250's text. A few messages first
warm the gateway up (not measured): a worker process's first message pays for its imports.

    python -m benchmarks.wake_latency --rate 10 --seconds 30 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import make_message, percentile
from benchmarks.smtp_throughput import MAILBOX, Gateway

WARM_UP = 6


@dataclass
class Run:
    mode: str
    messages: int
    offered_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Extra XGATE_ variables for the gateway started inside (it copies os.environ)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def offer(port: int, messages: Sequence[bytes], rate: float) -> dict[str, float]:
    """Send each message at its slot (one every 1/rate s); queue id -> time of its 250."""
    accepted: dict[str, float] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("bench.partner.example")
        start = time.monotonic()
        for i, message in enumerate(messages):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            smtp.mail("bench@partner.example")
            smtp.rcpt(MAILBOX)
            code, reply = smtp.data(message)
            if code != 250:
                raise RuntimeError(f"message {i}: {code} {reply!r}")
            accepted[reply.decode().rsplit(" ", 1)[1]] = time.time()
    return accepted


def filed_times(db: Path, queue_ids: Sequence[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    wanted = set(queue_ids)
    while True:
        with sqlite3.connect(db, timeout=30) as conn:
            rows = conn.execute("SELECT queue_id, updated_at FROM messages "
                                "WHERE state='delivered'").fetchall()
        done = {q: u for q, u in rows if q in wanted}
        if len(done) == len(wanted):
            # SQLAlchemy stores UTC datetimes in SQLite as naive ISO strings.
            return {q: datetime.fromisoformat(u).replace(tzinfo=UTC).timestamp()
                    for q, u in done.items()}
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(done)}/{len(wanted)} filed in {timeout:g} s")
        time.sleep(0.2)


def measure(mode: str, wake: bool, messages: Sequence[bytes], rate: float,
            workers: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="xgate-wake-") as tmp, \
            environment(XGATE_WORKERS__WAKE="true" if wake else "false"):
        gw = Gateway(Path(tmp), workers)
        try:
            # Warm up: every worker process has started and handled mail once (its first
            # message pays for imports and connections); then they fall idle, as at a quiet
            # moment of the day, before the measured messages come.
            warm = offer(gw.inbound, [make_message(len(messages[0]), -1 - i, MAILBOX)
                                      for i in range(WARM_UP)], rate)
            filed_times(gw.var / "xgate.db", list(warm), timeout=120)
            time.sleep(2)
            accepted = offer(gw.inbound, messages, rate)
            filed = filed_times(gw.var / "xgate.db", list(accepted), timeout=120)
        finally:
            gw.stop()
    latency = [(filed[q] - accepted[q]) * 1000 for q in accepted]
    worst = sorted(range(len(latency)), key=lambda i: -latency[i])[:5]
    print(f"{mode}: slowest messages (index: ms) "
          + ", ".join(f"{i}: {latency[i]:.0f}" for i in worst), flush=True)
    return Run(mode, len(messages), rate, percentile(latency, 50), percentile(latency, 99),
               max(latency))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="messages offered a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long, per mode")
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of both modes, alternating; medians are printed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    count = int(args.rate * args.seconds)
    corpus = [make_message(args.size, i, MAILBOX) for i in range(count)]
    runs: dict[str, list[Run]] = {"wake": [], "poll": []}
    for _ in range(args.rounds):
        runs["wake"].append(measure("wake", True, corpus, args.rate, args.workers))
        runs["poll"].append(measure("poll", False, corpus, args.rate, args.workers))
    print(f"\n## {args.size // 1024} KB messages offered at {args.rate:g}/s for "
          f"{args.seconds:g} s ({count} messages), {args.workers} worker processes, median "
          f"of {args.rounds} round(s); 250 -> filed in the mailbox")
    print(f"{'mode':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    results = {}
    for mode, label in (("poll", "poll (workers.wake = false), base"),
                        ("wake", "woken when intake commits")):
        rs = runs[mode]
        row = Run(mode, count, args.rate, statistics.median(r.p50_ms for r in rs),
                  statistics.median(r.p99_ms for r in rs),
                  statistics.median(r.max_ms for r in rs))
        results[mode] = asdict(row)
        print(f"{label:<34} {row.p50_ms:>8.1f} {row.p99_ms:>8.1f} {row.max_ms:>8.1f}")
    goal = results["wake"]["p99_ms"] < 100
    print(f"goal p99 < 100 ms with wake: {'met' if goal else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
