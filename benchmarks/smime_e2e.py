"""End-to-end inbound rate of S/MIME mail through ``xgate serve``, and its CPU per message.

The corpus: N messages as a partner's client sends them, made with the real tools by
benchmarks/crypto_throughput.py's ``smime_sample`` (``openssl cms -sign -nodetach``, then
``openssl cms -encrypt -aes-256-cbc`` for the mailbox's certificate; RSA-3072). The clear
entity is a short text and a base64 attachment of 75 KB of random bytes (about 100 KB of
MIME), about 200 KB as sent. Every message has its own random attachment, so clamd's cache
of clean results answers nothing.

In each round, in alternating order:

  xgate   ``xgate serve`` on a fresh ``xgate init --demo`` installation (SQLite, the
          workers ``--workers`` processes, its own managed clamd with the signatures it
          finds): the mailbox's own S/MIME key, the partner's certificate approved, the CA
          as trust anchor. Receipts are off for the mailbox (they are outbound mail of
          their own), the citizen portal is off. After a warm-up (init's demo mail and a
          few S/MIME messages filed), C SMTP clients send the corpus; the clock runs from
          the first connection until the last message is filed in the mailbox. CPU time
          (utime + stime, children reaped included) of the serve process and every process
          below it (the SMTP part, the workers, the web app, the demo catcher, clamd) is read
          from /proc before and after. Every message must be filed with its decryption and
          signature recorded, or the run stops: a failure path is never timed.
  bare    benchmarks/bare_fsync_server.py (aiosmtpd, fsync before 250) gets the same
          messages from the same clients: the floor of an SMTP intake, for scale.

Printed: messages/s (wall), CPU ms per message in total and per process kind, and
messages/s per core = 1000 / CPU ms per message, the figure the issue's goal is stated in
(at least 60, aim 100). Medians over the rounds. The clients send as fast as they get their
250s, faster than the workers file, so the end-to-end p50/p99 show the backlog a burst
builds up, not one message's own time (benchmarks of latency at a steady offered rate are
elsewhere). With ``--baseline-rev REV`` the same rounds also run ``xgate serve`` from the
sources at REV (git archive into the temporary directory; this checkout is not touched), for
a before and after on the same machine state.

    python benchmarks/smime_e2e.py [--messages 400] [--clients 4] [--rounds 3] [--json F]
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/smime_e2e.py
    sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, percentile, stop_process, wait_for_port
from benchmarks.crypto_throughput import MAILBOX, PARTNER, smime_sample
from tests.support.smime_pki import Party, make_ca, make_person

ENTITY_BYTES = 102_400  # the clear entity: its base64 attachment holds 75 KB
TICK = os.sysconf("SC_CLK_TCK")
GOAL_PER_CORE, AIM_PER_CORE = 60, 100
ACTOR = "benchmark"


_BEGAN = time.monotonic()


def log(text: str) -> None:
    print(f"[smime-e2e {time.monotonic() - _BEGAN:5.0f} s] {text}", file=sys.stderr,
          flush=True)


# --- CPU time of a process tree, from /proc ---------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks: utime + stime + cutime + cstime), or None if it is gone.

    The reaped children's time (cutime, cstime) counts too: a part restarted during the run
    leaves its CPU there."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def _kind(pid: int, root: int) -> str:
    if pid == root:
        return "supervisor"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
    args = [a.decode(errors="replace") for a in argv if a]
    if args and Path(args[0]).name == "clamd":
        return "clamd"
    # A part started as "xgate serve PART" (older trees, e.g. --baseline-rev) or through the
    # lean entry "python -m gateway.serve.part -c CONFIG PART".
    if ("serve" in args or "gateway.serve.part" in args) and args[-1] != "serve":
        part = args[-1]
        # The managed clamd's Python part only waits on clamd; it is the gateway's own.
        return {"worker": "workers", "smtp": "smtp"}.get(part, "other")
    return "other"


def tree_cpu(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (kind, CPU ticks) for ``root`` and every process below it."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], ticks[int(entry.name)] = stat
    inside = {root}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in inside} - inside
        grew = bool(found)
        inside |= found
    return {pid: (_kind(pid, root), ticks[pid]) for pid in inside if pid in ticks}


def cpu_delta(before: Mapping[int, tuple[str, int]], after: Mapping[int, tuple[str, int]]
              ) -> dict[str, float]:
    """CPU seconds per kind of process between two snapshots."""
    spent: dict[str, float] = {}
    for pid, (kind, ticks) in after.items():
        earlier = before.get(pid, (kind, 0))[1]
        spent[kind] = spent.get(kind, 0.0) + (ticks - earlier) / TICK
    return spent


# --- the corpus ---------------------------------------------------------------------------------


@dataclass
class Keys:
    ca: Party
    ours: Party
    partner: Party


def make_corpus(work: Path, count: int, keys: Keys) -> list[bytes]:
    """``count`` distinct signed-then-encrypted messages (openssl, two calls each)."""
    def one(index: int) -> bytes:
        return smime_sample(work, ENTITY_BYTES, index, keys.ca, keys.partner, keys.ours).raw

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, range(count)))


# --- sending ----------------------------------------------------------------------------------


def send_all(port: int, messages: Sequence[bytes], clients: int) -> tuple[float, list[float]]:
    """Every message over ``clients`` connections; (first start, each message's 250 time)."""
    accepted = [0.0] * len(messages)
    errors: list[str] = []

    def client(indices: range) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
                smtp.ehlo("mail.partner.example")
                for i in indices:
                    refused = smtp.sendmail(PARTNER, [MAILBOX], messages[i])
                    if refused:
                        errors.append(f"message {i}: {refused}")
                    accepted[i] = time.time()
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(f"client {indices}: {exc!r}")

    per = (len(messages) + clients - 1) // clients
    threads = [threading.Thread(target=client,
                                args=(range(k * per, min(len(messages), (k + 1) * per)),))
               for k in range(clients)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors[:5]))
    return started, accepted


# --- the targets --------------------------------------------------------------------------------


@dataclass
class Round:
    target: str
    messages: int
    seconds: float  # first connection to the last message filed (bare: its last 250)
    cpu: dict[str, float]  # CPU seconds per kind of process
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    test_signatures: bool = False  # clamd had only the test signatures loaded

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms(self) -> float:
        return sum(self.cpu.values()) * 1000 / self.messages

    def cpu_ms_of(self, kind: str) -> float:
        return self.cpu.get(kind, 0.0) * 1000 / self.messages


def measure_bare(corpus: Sequence[bytes], clients: int) -> Round:
    port = free_port()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="xgate-bare-") as spool:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_fsync_server",
                                 str(port), spool], cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            before = tree_cpu(proc.pid)
            started, accepted = send_all(port, corpus, clients)
            after = tree_cpu(proc.pid)
        finally:
            stop_process(proc, 10)
    cpu = cpu_delta(before, after)
    return Round("bare aiosmtpd + fsync", len(corpus), max(accepted) - started,
                 {"bare server": sum(cpu.values())}, load=(load, os.getloadavg()[0]))


class Gateway:
    """``xgate serve`` on a fresh ``xgate init --demo`` installation with the S/MIME keys.

    ``tree``: run the gateway from that source tree (e.g. an earlier commit, for a before
    and after in one run) instead of this checkout."""

    def __init__(self, workdir: Path, keys: Keys, workers: int, tree: Path | None = None
                 ) -> None:
        from scanning.managed import repository_test_signatures

        self.var = workdir / "var"
        self.db = self.var / "xgate.db"
        self.inbound = free_port()
        self.tree = tree or ROOT
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("XGATE_")},
            "XGATE_SMTP__INBOUND__PORT": str(self.inbound),
            "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
            "XGATE_WEB__PORT": str(free_port()),
            "XGATE_PORTAL__ENABLED": "false",
            "XGATE_WORKERS__PROCESSES": str(workers),
            "XGATE_LOGGING__LEVEL": "WARNING",
            "XGATE_CRYPTO__TRUST_ANCHORS_FILE": str(keys.ca.cert_pem),
        }
        if tree is not None:
            # Ahead of the editable install's finder; serve's children inherit it.
            self.env["PYTHONPATH"] = str(tree)
            signatures = repository_test_signatures()
            if signatures is not None:  # beside this checkout, not beside ``tree``
                self.env["XGATE_SCANNING__TEST_SIGNATURES_DIR"] = str(signatures)
        # --demo for its self-signed TLS certificate and the catcher every notice goes to.
        self.xgate("init", str(self.var), "--demo", "--catcher-port", str(free_port()),
                   "--portal-port", str(free_port()), configured=False)
        self._install_keys(keys)
        self.output = workdir / "xgate-serve.out"
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(self.command("serve"), env=self.env, cwd=self.tree,
                                         stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.inbound)
        except BaseException:
            self.stop()
            raise

    def command(self, *args: str, configured: bool = True) -> list[str]:
        config = ["-c", str(self.var / "xgate.toml")] if configured else []
        return [sys.executable, "-m", "gateway.cli", *config, *args]

    def xgate(self, *args: str, configured: bool = True) -> None:
        done = subprocess.run(self.command(*args, configured=configured), env=self.env,
                              cwd=self.tree, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"xgate {' '.join(args[:3])}: {done.stderr.strip()}")

    def _install_keys(self, keys: Keys) -> None:
        """With the tree's own CLI: the mailbox (receipts off: they are outbound mail of
        their own), its own key, the partner's certificate approved."""
        self.xgate("mailbox", "add", MAILBOX, "--name", "Hilfeplanung")
        self.xgate("mailbox", "set", MAILBOX, "--no-receipt")
        self.xgate("keys", "own", "import", "--address", MAILBOX, "--cert",
                   str(keys.ours.cert_pem), "--key", str(keys.ours.key_pem), "--actor", ACTOR)
        self.xgate("keys", "import", str(keys.partner.cert_pem), "--approve", "--actor", ACTOR)

    def _rows(self, query: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(query, args).fetchall()

    def wait_idle(self, timeout: float) -> None:
        """Until no message that is due waits or is being worked on (init's demo mail, the
        warm-up); one of the demo mails is due minutes later and is left waiting."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.time()
            busy = [state for state, due in self._rows(
                "SELECT state, next_attempt_at FROM messages WHERE state IN "
                "('received', 'processing')") if state == "processing" or _stamp(due) <= now]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue not idle after {timeout} s: {busy}")
            time.sleep(0.1)

    def wait_filed(self, count: int, timeout: float) -> list[float]:
        """The filing times of ``count`` messages from the partner, once all are filed.

        Stops at once if one of them ends anywhere but in the mailbox, with its reason: a
        benchmark that times the failure path measures nothing."""
        deadline = time.monotonic() + timeout
        while True:
            filed = self._rows(
                "SELECT s.delivered_at FROM mailbox_messages s JOIN mailboxes b "
                "ON b.id = s.mailbox_id WHERE b.address = ? AND s.mail_from = ?",
                MAILBOX, PARTNER)
            if len(filed) >= count:
                break
            failed = self._rows(
                "SELECT state, reason FROM messages WHERE mail_from = ? AND direction = "
                "'inbound' AND state NOT IN ('received', 'processing', 'delivered')", PARTNER)
            if failed:
                raise RuntimeError(f"{len(failed)} message(s) not filed, e.g. {failed[0]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(filed)}/{count} filed in {timeout} s")
            time.sleep(0.05)
        return sorted(_stamp(f[0]) for f in filed)

    def check_decrypted_and_verified(self, count: int) -> None:
        """Each filed message was decrypted and its signature found valid (the facts the
        crypto stages record)."""
        facts = [json.loads(str(r[0]) or "{}") for r in self._rows(
            "SELECT facts FROM messages WHERE mail_from = ? AND state = 'delivered' "
            "AND direction = 'inbound'", PARTNER)]
        if len(facts) != count:
            raise RuntimeError(f"{len(facts)} delivered queue rows, {count} expected")
        for fact in facts:
            if not (is_decrypted(fact) and is_verified(fact)):
                raise RuntimeError(f"a message was filed without decryption and a valid "
                                   f"signature: {fact}")

    def forget_partner_messages(self) -> None:
        """After the warm-up: the measured round counts only its own messages."""
        with sqlite3.connect(self.db, timeout=30) as conn:
            conn.execute("UPDATE mailbox_messages SET mail_from = 'warm-up' "
                         "WHERE mail_from = ?", (PARTNER,))
            conn.execute("UPDATE messages SET mail_from = 'warm-up' WHERE mail_from = ?",
                         (PARTNER,))

    def clamd_has_test_signatures_only(self) -> bool:
        # What xgate serve says when it starts its managed clamd without real databases.
        return "TEST SIGNATURES ONLY" in self.output.read_text(errors="replace")

    def tail(self) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        stop_process(self.proc, 30)


def _stamp(value: object) -> float:
    """SQLAlchemy stores UTC datetimes in SQLite as naive ISO strings."""
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC).timestamp()


def is_decrypted(facts: Mapping[str, str]) -> bool:
    return facts.get("encryption") == "smime" and bool(facts.get("decrypted_with"))


def is_verified(facts: Mapping[str, str]) -> bool:
    return facts.get("signature") == "valid" and facts.get("signature_kind") == "smime"


@contextmanager
def gateway(workdir: Path, keys: Keys, workers: int, tree: Path | None
            ) -> Iterator[Gateway]:
    gw = Gateway(workdir, keys, workers, tree)
    try:
        yield gw
    except BaseException:
        log(f"xgate serve's output, last lines:\n{gw.tail()}")
        raise
    finally:
        gw.stop()


def measure_xgate(label: str, tree: Path | None, work: Path, corpus: Sequence[bytes],
                  warm_up: Sequence[bytes], keys: Keys, clients: int, workers: int) -> Round:
    with gateway(work, keys, workers, tree) as gw:
        log("  xgate serve started; waiting for init's demo mail and the warm-up")
        gw.wait_idle(120)
        # Every process has imported, connected and cached what a first message needs.
        send_all(gw.inbound, warm_up, min(clients, len(warm_up)))
        gw.wait_filed(len(warm_up), 120)
        gw.check_decrypted_and_verified(len(warm_up))
        gw.wait_idle(120)
        gw.forget_partner_messages()
        load = os.getloadavg()[0]
        before = tree_cpu(gw.proc.pid)
        started, accepted = send_all(gw.inbound, corpus, clients)
        filed = gw.wait_filed(len(corpus), 600)
        after = tree_cpu(gw.proc.pid)
        gw.check_decrypted_and_verified(len(corpus))
        test_signatures = gw.clamd_has_test_signatures_only()
    # Filing times pair with 250 times by order of completion: right for the distribution
    # (p50/p99), not for any single message.
    e2e = [(f - a) * 1000 for a, f in zip(sorted(accepted), filed, strict=True)]
    return Round(label, len(corpus), max(filed) - started,
                 cpu_delta(before, after), percentile(e2e, 50), percentile(e2e, 99),
                 (load, os.getloadavg()[0]), test_signatures)


# --- the report ---------------------------------------------------------------------------------


KINDS = ("smtp", "workers", "clamd", "other", "supervisor")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class Summary:
    """Medians over one target's rounds."""

    target: str
    rate: float
    cpu_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float
    cpu_ms_by_kind: dict[str, float]
    per_core_rounds: list[float]
    load_1min_before_after: list[tuple[float, float]]

    @property
    def per_core(self) -> float:
        return 1000 / self.cpu_ms


def summary(rounds: Sequence[Round]) -> Summary:
    def med(get: Callable[[Round], float]) -> float:
        return median([get(r) for r in rounds])

    return Summary(rounds[0].target, med(lambda r: r.rate), med(lambda r: r.cpu_ms),
                   med(lambda r: r.e2e_p50_ms or 0.0), med(lambda r: r.e2e_p99_ms or 0.0),
                   {k: median([r.cpu_ms_of(k) for r in rounds]) for k in KINDS},
                   [1000 / r.cpu_ms for r in rounds], [r.load for r in rounds])


def report(results: Mapping[str, Sequence[Round]], args: argparse.Namespace, wire: float
           ) -> dict[str, object]:
    bare = summary(results["bare"])
    xgates = [summary(rounds) for name, rounds in results.items() if name != "bare"]
    print(f"\n## S/MIME in, end to end: {args.messages} messages of {wire / 1024:.0f} KB as "
          f"sent (75 KB attachment), {args.clients} clients, {args.workers} worker processes, "
          f"median of {args.rounds} rounds; {os.cpu_count()} CPUs")
    print("| target | msg/s (wall) | CPU ms/msg | msg/s per core | e2e p50 ms | e2e p99 ms |")
    print("|---|---|---|---|---|---|")
    print(f"| {bare.target} | {bare.rate:.1f} | {bare.cpu_ms:.2f} | {bare.per_core:.0f} "
          "| - | - |")
    for x in xgates:
        print(f"| {x.target} | {x.rate:.1f} | {x.cpu_ms:.1f} | {x.per_core:.1f} | "
              f"{x.e2e_p50_ms:.0f} | {x.e2e_p99_ms:.0f} |")
    print("\nxgate's CPU ms per message by process (medians; other: the web app, the demo "
          "catcher, the managed clamd's Python part):")
    print("| target | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    for x in xgates:
        print(f"| {x.target} | "
              + " | ".join(f"{x.cpu_ms_by_kind[k]:.1f}" for k in KINDS) + " |")
    for x in xgates:
        verdict = "met" if x.per_core >= GOAL_PER_CORE else "MISSED"
        print(f"\n{x.target}: goal >= {GOAL_PER_CORE} msg/s per core (aim {AIM_PER_CORE}): "
              f"{verdict} ({x.per_core:.1f}); per round: "
              + ", ".join(f"{v:.1f}" for v in x.per_core_rounds))
        print("  load average (1 min) before/after its rounds: "
              + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in x.load_1min_before_after))
    if any(r.test_signatures for rounds in results.values() for r in rounds):
        print("\nNOTE: clamd had only the test signatures loaded; with ClamAV's real databases "
              "its CPU per message is larger, so the per-core rate here is an upper bound.")
    if len(xgates) == 2:
        print(f"\nper-core rate, this tree / {args.baseline_rev}: "
              f"{xgates[0].per_core / xgates[1].per_core:.2f}")
    sys.stdout.flush()
    return {"messages": args.messages, "clients": args.clients, "workers": args.workers,
            "rounds": args.rounds, "wire_bytes_mean": wire,
            "bare": {**asdict(bare), "per_core": bare.per_core},
            "xgate": [{**asdict(x), "per_core": x.per_core,
                       "goal_met": x.per_core >= GOAL_PER_CORE} for x in xgates],
            "goal_per_core": GOAL_PER_CORE,
            "rounds_detail": [{**asdict(r), "rate": r.rate, "cpu_ms": r.cpu_ms}
                              for rounds in results.values() for r in rounds]}


def extract_tree(rev: str, into: Path) -> Path:
    """The gateway's sources at ``rev`` (git archive: the repository is only read)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4, help="concurrent SMTP clients")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every target, in rotating order; medians are reported")
    parser.add_argument("--warm-up", type=int, default=8,
                        help="S/MIME messages filed before the clock starts")
    parser.add_argument("--baseline-rev",
                        help="also measure xgate serve as of this git revision (e.g. the "
                             "commit before a change), for a before and after in one run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if min(args.messages, args.clients, args.workers, args.rounds, args.warm_up) < 1:
        parser.error("every count must be at least 1")

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="xgse-"))
    try:
        trees: dict[str, Path | None] = {"xgate serve (this tree)": None}
        if args.baseline_rev:
            log(f"the sources as of {args.baseline_rev}")
            trees[f"xgate serve ({args.baseline_rev})"] = extract_tree(args.baseline_rev,
                                                                        work / "base")
        log("S/MIME PKI: RSA-3072 CA, the mailbox's and the partner's certificates")
        pki = work / "pki"
        pki.mkdir()
        ca = make_ca(pki, "ca")
        keys = Keys(ca, make_person(pki, "hilfeplan", MAILBOX, ca),
                    make_person(pki, "partner", PARTNER, ca))
        log(f"{args.messages + args.warm_up} messages: openssl cms -sign, then -encrypt")
        everything = make_corpus(work, args.messages + args.warm_up, keys)
        warm_up, corpus = everything[:args.warm_up], everything[args.warm_up:]
        wire = statistics.mean(len(m) for m in corpus)
        targets = ["bare", *trees]
        results: dict[str, list[Round]] = {t: [] for t in targets}
        for r in range(args.rounds):
            # The same corpus each round: every xgate round has a fresh clamd (empty cache).
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for target in order:
                log(f"round {r + 1}/{args.rounds}: {target}")
                if target == "bare":
                    results[target].append(measure_bare(corpus, args.clients))
                else:
                    round_dir = work / f"round{r}-{len(results[target])}-{order.index(target)}"
                    round_dir.mkdir()
                    results[target].append(measure_xgate(
                        target, trees[target], round_dir, corpus, warm_up, keys, args.clients,
                        args.workers))
                    shutil.rmtree(round_dir, ignore_errors=True)
                last = results[target][-1]
                log(f"  {last.rate:.1f} msg/s, {last.cpu_ms:.1f} CPU ms/msg "
                    f"({', '.join(f'{k} {v:.1f}s' for k, v in sorted(last.cpu.items()))})")
        result = report(results, args, wire)
        print(f"\n(total run time {time.monotonic() - began:.0f} s)")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
