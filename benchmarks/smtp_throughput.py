"""Throughput of the gateway's SMTP intake and pipeline, against a bare fsync server.

For each message size it sends N messages over SMTP with C concurrent clients:
  1. to a bare aiosmtpd server that only fsyncs each message (the baseline), and
  2. through ``xgate serve`` (SQLite, embedded default) into a shared mailbox,
and prints the accept rate (up to the 250), the end-to-end rate (up to delivered), p50/p99
latencies, and the ratio of the gateway's accept rate to the baseline's.

    python -m benchmarks.smtp_throughput --messages 500 --clients 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import free_port, make_message, percentile, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
MAILBOX = "kindertagespflege@jugendamt.example"


@dataclass
class Run:
    target: str
    size: int
    messages: int
    accept_rate: float
    accept_p50_ms: float
    accept_p99_ms: float
    e2e_rate: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None


def send_all(port: int, messages: Sequence[bytes], clients: int) -> tuple[list[float],
                                                                        list[float]]:
    """Send every message; returns each one's start time and its 250 time (time.time())."""
    starts = [0.0] * len(messages)
    accepted = [0.0] * len(messages)
    errors: list[str] = []

    def client(indices: range) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.ehlo("bench.partner.example")
            for i in indices:
                starts[i] = time.time()
                refused = smtp.sendmail("bench@partner.example", [MAILBOX], messages[i])
                if refused:
                    errors.append(f"message {i}: {refused}")
                accepted[i] = time.time()

    per = (len(messages) + clients - 1) // clients
    threads = [threading.Thread(target=client, args=(range(k * per,
                                                           min(len(messages), (k + 1) * per)),))
               for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors[:5]))
    return starts, accepted


def measure_bare(messages: Sequence[bytes], clients: int, size: int) -> Run:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="xgate-bare-") as spool:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_fsync_server",
                                 str(port), spool], cwd=ROOT, stdout=subprocess.PIPE)
        try:
            wait_for_port(port)
            starts, accepted = send_all(port, messages, clients)
        finally:
            proc.terminate()
            proc.wait(10)
    lat = [(a - s) * 1000 for s, a in zip(starts, accepted, strict=True)]
    return Run("bare aiosmtpd + fsync", size, len(messages),
               len(messages) / (max(accepted) - min(starts)),
               percentile(lat, 50), percentile(lat, 99))


class Gateway:
    """``xgate serve`` on the embedded default, in a temporary directory."""

    def __init__(self, workdir: Path, workers: int) -> None:
        self.workdir = workdir
        self.var = workdir / "var"
        self.inbound = free_port()
        xgate = Path(sys.executable).parent / "xgate"
        self.xgate = str(xgate) if xgate.exists() else "xgate"
        self.env = {
            **os.environ,
            "XGATE_SMTP__INBOUND__PORT": str(self.inbound),
            "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
            "XGATE_WEB__PORT": str(free_port()),
            "XGATE_WORKERS__PROCESSES": str(workers),
            "XGATE_LOGGING__LEVEL": "WARNING",
        }
        subprocess.run([self.xgate, "init", str(self.var), "--demo"], check=True,
                       env=self.env, stdout=subprocess.DEVNULL)
        self.proc = subprocess.Popen([self.xgate, "-c", str(self.var / "xgate.toml"), "serve"],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.inbound)

    def delivered_times(self, queue_count: int, timeout: float) -> dict[str, float]:
        """Wait until ``queue_count`` messages are delivered; their delivery times."""
        db = self.var / "xgate.db"
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(db, timeout=30) as conn:
                rows = conn.execute(
                    "SELECT queue_id, updated_at FROM messages WHERE state='delivered' "
                    "AND mail_from='bench@partner.example'").fetchall()
            if len(rows) >= queue_count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(rows) < queue_count:
            raise TimeoutError(f"only {len(rows)}/{queue_count} delivered in {timeout}s")
        # SQLAlchemy stores UTC datetimes in SQLite as naive ISO strings.
        return {q: datetime.fromisoformat(u).replace(tzinfo=UTC).timestamp() for q, u in rows}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure_gateway(messages: Sequence[bytes], clients: int, size: int, workers: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="xgate-bench-") as tmp:
        gw = Gateway(Path(tmp), workers)
        try:
            starts, accepted = send_all(gw.inbound, messages, clients)
            delivered = gw.delivered_times(len(messages), timeout=600)
        finally:
            gw.stop()
    lat = [(a - s) * 1000 for s, a in zip(starts, accepted, strict=True)]
    done = sorted(delivered.values())
    # Delivery times are per queue row; pair them with sends by order of completion, which
    # is enough for the distribution (p50/p99), not for per-message attribution.
    e2e = [(d - s) * 1000 for s, d in zip(sorted(starts), done, strict=True)]
    return Run("xgate (SQLite, mailbox)", size, len(messages),
               len(messages) / (max(accepted) - min(starts)),
               percentile(lat, 50), percentile(lat, 99),
               len(messages) / (max(done) - min(starts)),
               percentile(e2e, 50), percentile(e2e, 99))


def median_run(runs: list[Run]) -> Run:
    """The median of each figure over the rounds (not one round's figures)."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    e2e = [r for r in runs if r.e2e_rate is not None]
    return Run(
        runs[0].target, runs[0].size, runs[0].messages,
        med([r.accept_rate for r in runs]), med([r.accept_p50_ms for r in runs]),
        med([r.accept_p99_ms for r in runs]),
        med([r.e2e_rate for r in e2e if r.e2e_rate]) if e2e else None,
        med([r.e2e_p50_ms for r in e2e if r.e2e_p50_ms]) if e2e else None,
        med([r.e2e_p99_ms for r in e2e if r.e2e_p99_ms]) if e2e else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating bare/xgate rounds; medians are reported, because "
                             "one round's figures swing by a third on a shared machine")
    parser.add_argument("--sizes", default="10240,102400")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    results: list[dict[str, object]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        corpus = [make_message(size, i, MAILBOX) for i in range(args.messages)]
        bares: list[Run] = []
        gateways: list[Run] = []
        for _ in range(args.rounds):
            bares.append(measure_bare(corpus, args.clients, size))
            gateways.append(measure_gateway(corpus, args.clients, size, args.workers))
        bare, gateway = median_run(bares), median_run(gateways)
        ratios = [g.accept_rate / b.accept_rate for b, g in zip(bares, gateways, strict=True)]
        print(f"\n## {size // 1024} KB messages: {args.messages} messages, {args.clients} "
              f"clients, {args.workers} workers, median of {args.rounds} rounds")
        print("| target | accept msg/s | accept p50 ms | accept p99 ms | "
              "end-to-end msg/s | e2e p50 ms | e2e p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for r in (bare, gateway):
            e2e = (f"{r.e2e_rate:.1f} | {r.e2e_p50_ms:.0f} | {r.e2e_p99_ms:.0f}"
                   if r.e2e_rate is not None else "- | - | -")
            print(f"| {r.target} | {r.accept_rate:.1f} | {r.accept_p50_ms:.1f} | "
                  f"{r.accept_p99_ms:.1f} | {e2e} |")
        print(f"\naccept-rate ratio xgate / bare (medians): "
              f"{gateway.accept_rate / bare.accept_rate:.2f}; per round: "
              + ", ".join(f"{r:.2f}" for r in ratios))
        sys.stdout.flush()
        results.append({"size": size, "bare": asdict(bare), "xgate": asdict(gateway),
                        "round_ratios": ratios})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
