"""Peak memory of ``xgate serve`` for one message with a large clean attachment.

Starts ``xgate serve`` on the embedded default (SQLite, the managed clamd, ``--workers``
worker processes) with the SMTP size limit raised to take the message, sends one message
with a ``--attachment-mb`` MB attachment over SMTP into a shared mailbox (``--kind``: random
bytes as base64, the default, with nothing to compress and nothing clamd could cache; text
as quoted-printable; random bytes stored in a zip), waits until it is filed, and reads from
``/proc/<pid>/status``:

- the SMTP process's and each worker process's RSS before the first message (idle), the
  peak while the message passed (VmHWM, reset with ``/proc/<pid>/clear_refs`` before each
  round), and the RSS a few seconds after it was filed ("released afterwards");
- the worker reported is the one whose peak rose most (it processed the message).

Figures are multiples of the message size as sent (the base64 message, about 4/3 of the
attachment): the absolute peak RSS (what the README's "11x" counted) and the peak above
the process's idle RSS (what the message itself cost). Medians over ``--rounds`` rounds, a
fresh message each round, in the same running gateway.

    python -m benchmarks.memory_peak [--attachment-mb 50] [--kind base64|quoted-printable|zip]
                                     [--rounds 3] [--workers 2]

Everything it starts it stops again; all files live in a temporary directory that is
removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import quopri
import re
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
MAILBOX = "kindertagespflege@jugendamt.example"
SENDER = "memory@partner.example"
MiB = 2**20


KINDS = ("base64", "quoted-printable", "zip")


def big_message(attachment_bytes: int, index: int, kind: str = "base64") -> bytes:
    """One message with an attachment of ``attachment_bytes``: random bytes as base64
    (nothing to compress, nothing clamd could cache), text as quoted-printable (German with
    umlauts and long lines, as a mail program writes it), or random bytes stored in a zip
    sent as base64 (the archive checks read the member)."""
    if kind == "quoted-printable":
        words = [b"Hilfeplan", b"Gespr\xc3\xa4ch", b"Jugendamt", b"f\xc3\xbcr", b"Kind", b"="]
        text = b" ".join(words[i % len(words)] for i in range(attachment_bytes // 8))
        body = quopri.encodestring(text[:attachment_bytes]).replace(b"\n", b"\r\n")
        part = (b"Content-Type: text/plain; charset=utf-8; name=\"bericht.txt\"\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n") + body
    else:
        data = os.urandom(attachment_bytes)
        name, content_type = "akte.bin", "application/octet-stream"
        if kind == "zip":
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
                zf.writestr("akte.bin", data)
            data, name, content_type = archive.getvalue(), "akte.zip", "application/zip"
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
        part = (f"Content-Type: {content_type}; name=\"{name}\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n").encode() + body
    return (f"From: {SENDER}\r\nTo: {MAILBOX}\r\nSubject: Akte {index}\r\n"
            f"Message-ID: <memory-{index}@partner.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n"
            "--b\r\n").encode() + part + b"\r\n--b--\r\n"


def status_bytes(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert found is not None, field
    return int(found.group(1)) * 1024


def reset_peak(pid: int) -> None:
    # "5" resets VmHWM to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Serve:
    """``xgate serve`` (SQLite, managed clamd) in a temporary directory."""

    def __init__(self, workdir: Path, workers: int, limit: int) -> None:
        self.var = workdir / "var"
        self.inbound = free_port()
        xgate = Path(sys.executable).parent / "xgate"
        self.env = {
            **os.environ,
            "XGATE_SMTP__INBOUND__PORT": str(self.inbound),
            "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
            "XGATE_WEB__PORT": str(free_port()),
            # init --demo switches on the portal and the demo catcher: free ports for them
            # too, as other benchmarks or tests may run serve at the same time.
            "XGATE_PORTAL__PORT": str(free_port()),
            "XGATE_DEMO__CATCHER__PORT": str(free_port()),
            "XGATE_WORKERS__PROCESSES": str(workers),
            "XGATE_SMTP__MAX_MESSAGE_BYTES": str(limit),
            "XGATE_LOGGING__LEVEL": "WARNING",
        }
        command = str(xgate) if xgate.exists() else "xgate"
        subprocess.run([command, "init", str(self.var), "--demo"], check=True, env=self.env,
                       stdout=subprocess.DEVNULL)
        self.proc = subprocess.Popen([command, "-c", str(self.var / "xgate.toml"), "serve"],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.inbound)

    def pids(self) -> dict[str, int]:
        """Part name -> pid, from the supervisor's status file."""
        data = json.loads((self.var / "metrics" / "parts.json").read_text())
        return {name: int(part["pid"]) for name, part in data["parts"].items()
                if part.get("pid")}

    def wait_filed(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sqlite3.connect(self.var / "xgate.db", timeout=30) as conn:
                states = [s for (s,) in conn.execute(
                    "SELECT state FROM messages WHERE mail_from = ?", (SENDER,))]
            if len([s for s in states if s == "delivered"]) >= count:
                return
            if any(s in ("quarantined", "failed", "rejected") for s in states):
                raise RuntimeError(f"the message was not delivered: {states}")
            time.sleep(0.1)
        raise TimeoutError(f"{count} message(s) not filed within {timeout:g} s")

    def stop(self) -> None:
        stop_process(self.proc, 30)


@dataclass
class Round:
    message_bytes: int
    smtp_idle: int
    smtp_peak: int
    smtp_after: int
    worker_idle: int
    worker_peak: int
    worker_after: int
    seconds: float


def idle_rss(serve: Serve) -> dict[int, int]:
    """RSS of every part before the first large message: the baseline of every round, so
    what a round keeps afterwards shows in the next round's figures too."""
    return {pid: status_bytes(pid, "VmRSS") for pid in serve.pids().values()}


def one_round(serve: Serve, attachment: int, index: int, settle: float,
              idle: dict[int, int], kind: str = "base64") -> Round:
    message = big_message(attachment, index, kind)
    pids = serve.pids()
    smtp = pids["smtp"]
    workers = {name: pid for name, pid in pids.items() if name.startswith("worker")}
    watched = [smtp, *workers.values()]
    for pid in watched:
        reset_peak(pid)
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", serve.inbound, timeout=600) as client:
        client.sendmail(SENDER, [MAILBOX], message)
    serve.wait_filed(index + 1, timeout=900)
    seconds = time.monotonic() - started
    peaks = {pid: status_bytes(pid, "VmHWM") for pid in watched}
    time.sleep(settle)
    after = {pid: status_bytes(pid, "VmRSS") for pid in watched}
    worker = max(workers.values(), key=lambda pid: peaks[pid] - idle[pid])
    return Round(len(message), idle[smtp], peaks[smtp], after[smtp],
                 idle[worker], peaks[worker], after[worker], seconds)


def report(rounds: Sequence[Round]) -> dict[str, float]:
    def med(values: Sequence[float]) -> float:
        return statistics.median(values)

    size = med([r.message_bytes for r in rounds])
    figures = {
        "message_mib": size / MiB,
        "smtp_idle_mib": med([r.smtp_idle for r in rounds]) / MiB,
        "smtp_peak_x": med([r.smtp_peak / r.message_bytes for r in rounds]),
        "smtp_peak_above_idle_x": med([(r.smtp_peak - r.smtp_idle) / r.message_bytes
                                       for r in rounds]),
        "smtp_after_above_idle_x": med([(r.smtp_after - r.smtp_idle) / r.message_bytes
                                        for r in rounds]),
        "worker_idle_mib": med([r.worker_idle for r in rounds]) / MiB,
        "worker_peak_x": med([r.worker_peak / r.message_bytes for r in rounds]),
        "worker_peak_above_idle_x": med([(r.worker_peak - r.worker_idle) / r.message_bytes
                                         for r in rounds]),
        "worker_after_above_idle_x": med([(r.worker_after - r.worker_idle) / r.message_bytes
                                          for r in rounds]),
        "seconds_to_filed": med([r.seconds for r in rounds]),
    }
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attachment-mb", type=float, default=50)
    parser.add_argument("--kind", choices=KINDS, default="base64",
                        help="how the attachment is sent (default: random bytes as base64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds after filing before the RSS is read again")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    attachment = int(args.attachment_mb * MiB)
    # The base64 message is about 4/3 of the attachment; the limit takes it with room.
    limit = attachment * 3 // 2 + MiB
    with tempfile.TemporaryDirectory(prefix="xgate-memory-") as tmp:
        serve = Serve(Path(tmp), args.workers, limit)
        try:
            # Let the parts finish starting (imports, clamd's signatures) before the baseline.
            time.sleep(args.settle)
            idle = idle_rss(serve)
            rounds = [one_round(serve, attachment, i, args.settle, idle, args.kind)
                      for i in range(args.rounds)]
        finally:
            serve.stop()
    for r in rounds:
        print(f"round: message {r.message_bytes / MiB:.1f} MiB, filed in {r.seconds:.1f} s; "
              f"SMTP idle {r.smtp_idle / MiB:.0f} peak {r.smtp_peak / MiB:.0f} after "
              f"{r.smtp_after / MiB:.0f} MiB; worker idle {r.worker_idle / MiB:.0f} peak "
              f"{r.worker_peak / MiB:.0f} after {r.worker_after / MiB:.0f} MiB",
              file=sys.stderr)
    figures = report(rounds)
    print(f"\n## Peak RSS, {args.attachment_mb:g} MB attachment as {args.kind} "
          f"({figures['message_mib']:.1f} MiB message), {args.workers} workers, "
          f"median of {args.rounds} rounds")
    print("| process | idle MiB | peak RSS / message | peak above idle / message | "
          "after, above idle / message |")
    print("|---|---|---|---|---|")
    for name in ("smtp", "worker"):
        print(f"| {name} | {figures[f'{name}_idle_mib']:.0f} | {figures[f'{name}_peak_x']:.2f}x"
              f" | {figures[f'{name}_peak_above_idle_x']:.2f}x | "
              f"{figures[f'{name}_after_above_idle_x']:.2f}x |")
    print(f"\nseconds from DATA to filed (median): {figures['seconds_to_filed']:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures,
                                         "rounds": [asdict(r) for r in rounds]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
