"""The relay's duplicate window: from the next hop's 250 to the worker's committed record.

A relayed message is delivered once the next hop has answered 250 to the final dot; the
gateway knows it only once its record of that delivery is committed. A worker that dies in
between leaves the recipient pending, and the message is sent again after the lease runs
out: a duplicate at the next hop. This measures how long that window is under load.

It runs ``xgate serve`` (SQLite, the embedded default: SMTP listener, worker processes,
managed clamd) in a temporary directory, sends N messages over SMTP from C clients, half to
a shared mailbox (filed by the workers, competing for the database's write lock) and half to
addresses relayed by an internal route to a counting SMTP sink in a process of its own
(benchmarks/counting_sink.py, which logs ``time.time()`` as it answers 250). Each worker logs
``relay recorded`` with ``recorded_at`` (``time.time()`` once the delivery is durable: the
relay journal's fsynced note, or in versions without the journal the queue database's
commit) for every relayed message. Window = recorded_at - the sink's 250, per message, on
one machine's clock. With ``--kills K`` it also SIGKILLs a worker process K times at random
moments (the supervisor restarts it) and counts duplicates at the sink.

    python -m benchmarks.relay_window [--messages 1000] [--clients 4] [--workers 2]
                                      [--rounds 3] [--kills 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import (
    ROOT,
    Sink,
    free_port,
    make_message,
    percentile,
    stop_process,
    wait_for_port,
)

MAILBOX = "kita@jugendamt.example"
SENDER = "bench@partner.example"
TEST_SIGNATURES = ROOT.parent / "shared" / "testdata" / "clamav"


@dataclass
class Result:
    messages: int
    relayed: int
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    kills: int = 0
    duplicates: int = 0
    seconds: float = 0.0


def _toml_string(value: object) -> str:
    return json.dumps(str(value))


def write_installation(var: Path, *, inbound: int, web: int, sink: int, workers: int) -> Path:
    """A migrated SQLite installation with a shared mailbox and an internal relay route."""
    from crypto.at_rest import MasterKey
    from gateway.db import make_engine, make_session_factory, session_scope
    from gateway.migrate import upgrade
    from gateway.settings import load_settings
    from gateway.tls import generate_self_signed
    from mailboxes.directory import add_mailbox

    (var / "keys").mkdir(parents=True)
    (var / "tls").mkdir()
    MasterKey.generate().write(var / "keys" / "master.key")
    generate_self_signed(var / "tls" / "cert.pem", var / "tls" / "key.pem", "xgate.bench")
    config = var / "xgate.toml"
    submission = free_port()
    config.write_text(f"""
data_dir = "."
[gateway]
local_domains = ["jugendamt.example"]
[database]
url = "sqlite:///xgate.db"
[storage]
master_key_file = "keys/master.key"
[tls]
cert_file = "tls/cert.pem"
key_file = "tls/key.pem"
[smtp]
hostname = "xgate.bench"
[smtp.inbound]
port = {inbound}
[smtp.submission]
port = {submission}
enabled = false
[web]
port = {web}
[workers]
processes = {workers}
count = 1
poll_interval_seconds = 0.1
lease_seconds = 5
[delivery]
retry_base_seconds = 1
retry_max_seconds = 2
[scanning]
test_signatures_dir = {_toml_string(TEST_SIGNATURES)}
[logging]
level = "INFO"
json = true
[[delivery.routes]]
domain = "jugendamt.example"
host = "127.0.0.1"
port = {sink}
tls = "none"
internal = true
""")
    settings = load_settings(config)
    engine = make_engine(settings)
    try:
        upgrade(engine)
        with session_scope(make_session_factory(engine)) as session:
            add_mailbox(session, MAILBOX, "Benchmark")
    finally:
        engine.dispose()
    return config


class Gateway:
    """``xgate serve`` on the installation; every part's JSON log lines in one file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("XGATE_")}
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "-c", str(config), "serve"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def records(self) -> list[dict[str, object]]:
        entries = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries

    def worker_pids(self) -> list[int]:
        """The worker processes running now (the last pid the supervisor started for each)."""
        latest: dict[str, int] = {}
        for entry in self.records():
            part = str(entry.get("part", ""))
            if (entry.get("logger") == "gateway.serve.supervisor" and part.startswith("worker")
                    and str(entry.get("message", "")).startswith("started")):
                latest[part] = int(str(entry["pid"]))
        return list(latest.values())

    def stop(self) -> None:
        stop_process(self.proc, 30)


def wait_for_socket(path: Path, timeout: float) -> None:
    """Until the managed clamd listens: a message scanned before would wait for a retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"clamd not listening on {path} after {timeout:g} s") from None
            time.sleep(0.1)


def send_all(port: int, messages: Sequence[tuple[str, bytes]], clients: int) -> list[str]:
    """Send every (recipient, message); returns each one's queue id from the 250."""
    queue_ids = [""] * len(messages)
    errors: list[str] = []

    def client(indices: range) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
                smtp.ehlo("mx.partner.example")
                for i in indices:
                    rcpt, data = messages[i]
                    smtp.mail(SENDER)
                    smtp.rcpt(rcpt)
                    code, reply = smtp.data(data)
                    if code != 250:
                        errors.append(f"message {i}: {code} {reply!r}")
                        continue
                    queue_ids[i] = reply.decode().rsplit(" ", 1)[1]
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(f"client: {exc}")

    per = (len(messages) + clients - 1) // clients
    threads = [threading.Thread(target=client, args=(range(
        k * per, min(len(messages), (k + 1) * per)),)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("; ".join(errors[:5]))
    return queue_ids


def wait_delivered(database: Path, queue_ids: Sequence[str], timeout: float) -> None:
    wanted = set(queue_ids)
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(database, timeout=30) as conn:
            done = {q for (q,) in conn.execute(
                "SELECT queue_id FROM messages WHERE state = 'delivered'")}
        missing = wanted - done
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(missing)} of {len(wanted)} messages not delivered "
                               f"within {timeout:g} s")
        time.sleep(0.1)


def one_round(messages: int, clients: int, workers: int, kills: int, seed: int) -> Result:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="xgate-relay-window-") as tmp:
        work = Path(tmp)
        sink = Sink(work)
        gateway = None
        try:
            inbound = free_port()
            config = write_installation(work / "var", inbound=inbound, web=free_port(),
                                        sink=sink.port, workers=workers)
            gateway = Gateway(config, work / "serve.log")
            wait_for_port(inbound, timeout=120)
            wait_for_socket(work / "var" / "clamd" / "clamd.sock", timeout=120)
            corpus: list[tuple[str, bytes]] = []
            for i in range(messages):
                rcpt = MAILBOX if i % 2 == 0 else f"staff{i}@jugendamt.example"
                corpus.append((rcpt, make_message(10_240, i, rcpt, SENDER)))
            started = time.monotonic()
            killer = None
            if kills:
                killer = threading.Thread(target=_kill_workers,
                                          args=(gateway, kills, rng), daemon=True)
                killer.start()
            queue_ids = send_all(inbound, corpus, clients)
            if killer is not None:
                killer.join()
            wait_delivered(work / "var" / "xgate.db", queue_ids, timeout=600)
            seconds = time.monotonic() - started
            # The sink logs as it answers; the gateway's last records are already written.
            replies = sink.replies()
            records = gateway.records()
        finally:
            if gateway is not None:
                gateway.stop()
            sink.stop()
    relayed = {f"<bench-{i}-10240@partner.example>": queue_ids[i]
               for i in range(messages) if i % 2 == 1}
    first_reply: dict[str, float] = {}
    for when, message_id in replies:
        first_reply.setdefault(relayed.get(message_id, message_id), when)
    counts = Counter(message_id for _, message_id in replies)
    recorded: dict[str, float] = {}
    for entry in records:
        if entry.get("message") == "relay recorded":
            recorded.setdefault(str(entry["queue_id"]), float(str(entry["recorded_at"])))
    windows = [(recorded[q] - first_reply[q]) * 1000 for q in relayed.values()
               if q in recorded and q in first_reply]
    if not windows:
        raise RuntimeError("no 'relay recorded' log lines found: is this the gateway version "
                           "that logs them?")
    return Result(messages, len(relayed), len(windows), percentile(windows, 50),
                  percentile(windows, 90), percentile(windows, 99), max(windows), kills,
                  sum(n - 1 for n in counts.values() if n > 1), seconds)


def _kill_workers(gateway: Gateway, kills: int, rng: random.Random) -> None:
    for _ in range(kills):
        time.sleep(rng.uniform(0.2, 1.0))
        pids = gateway.worker_pids()
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000,
                        help="messages sent; every second one is relayed")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=0,
                        help="SIGKILL a worker process this many times per round")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    results = []
    for number in range(args.rounds):
        result = one_round(args.messages, args.clients, args.workers, args.kills,
                           seed + number)
        results.append(result)
        print(f"round {number + 1}: {result.samples} windows of {result.relayed} relayed "
              f"messages; p50 {result.p50_ms:.2f} ms, p90 {result.p90_ms:.2f} ms, "
              f"p99 {result.p99_ms:.2f} ms, max {result.max_ms:.2f} ms; "
              f"{result.kills} kills, {result.duplicates} duplicates; "
              f"{result.seconds:.1f} s", flush=True)

    print(f"\nmedian of {args.rounds} rounds ({args.messages} messages, {args.clients} "
          f"clients, {args.workers} worker processes, seed {seed}): "
          f"p50 {statistics.median(r.p50_ms for r in results):.2f} ms, "
          f"p99 {statistics.median(r.p99_ms for r in results):.2f} ms, "
          f"max {statistics.median(r.max_ms for r in results):.2f} ms; "
          f"worst p99 {max(r.p99_ms for r in results):.2f} ms, "
          f"worst max {max(r.max_ms for r in results):.2f} ms")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
