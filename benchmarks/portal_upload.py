"""Upload throughput of the citizen portal for 10 MB files, against a bare FastAPI endpoint
that only streams the body to /dev/null, side by side in one run; and the portal process's
peak memory per upload.

Both apps run under uvicorn, each in a process of its own on loopback (so each one's memory
is its own): the portal as ``xgate serve portal`` builds it (``create_portal_app``), scanning
every file in the request with a real clamd (the managed clamd as ``xgate serve`` starts it)
and sealing each submission into the queue (SQLite in a temporary directory; no worker runs,
so the queue only grows). The bare endpoint is a FastAPI app with one route that reads
``request.stream()`` and writes each chunk to /dev/null.

The client (httpx, in this process) sends multipart form posts as a browser does, one file
of ``--size-mb`` MB (MB = 2**20 bytes) each, fresh random bytes per upload (clamd caches
clean results by hash), prepared before the clock starts. For the portal it fetches the form
before each upload, for its token and cookie (the form's fill-time check is set to 0). At each
concurrency, in each round, the portal and the bare endpoint take turns (alternating who goes
first); rates are medians over the rounds, in MB of file data per second.

Memory: before each batch the server's peak RSS is reset (``/proc/self/clear_refs``); after
it, the peak (VmHWM) minus the RSS before the batch, divided by the concurrency, is the peak
per concurrent upload. A separate batch per concurrency runs with tracemalloc on in the
portal (slower; not timed): its peak of Python allocations, likewise per upload. Goal: peak
under 2x the upload size per concurrent upload, throughput at least 50 % of the bare
endpoint's.

Where the portal's time goes: the same steps called in this process, one 10 MB file at a
time, medians (not over HTTP): SHA-256, the scan by clamd (INSTREAM), building the message
(base64), sealing and storing it in the queue (one transaction, SQLite).

    python benchmarks/portal_upload.py [--uploads N] [--size-mb MB] [--concurrency 1,4]
                                       [--rounds R] [--json]

Everything it starts (clamd, the two servers) it stops again; all files live in one
temporary directory that is removed at the end.
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/portal_upload.py
    sys.path.insert(0, str(ROOT))

import httpx

from benchmarks.common import free_port, stop_process, wait_for_port

MB = 1024 * 1024
TOPIC = "Kindertagespflege"
MAILBOX = "kindertagespflege@jugendamt.example"
FIELDS = {"topic": TOPIC, "name": "Erika Mustermann", "email": "", "case_reference": "",
          "message": "Anbei der Bescheid."}


# -- the servers (child processes) ----------------------------------------------------------


def settings_for(data_dir: Path, clamd_socket: str, concurrency: int) -> Any:
    from gateway.settings import load_settings

    return load_settings(None, **{
        "data_dir": str(data_dir),
        "database": {"url": f"sqlite:///{data_dir / 'xgate.db'}"},
        "storage": {"master_key_file": str(data_dir / "keys" / "master.key")},
        "logging": {"level": "WARNING", "json": False},
        "scanning": {"clamd_socket": clamd_socket},
        "portal": {"enabled": True, "min_fill_seconds": 0,
                   "max_concurrent_uploads": concurrency,
                   "submissions_per_ip_per_hour": 1_000_000,
                   "submissions_per_hour": 1_000_000,
                   "topics": [{"name": TOPIC, "mailbox": MAILBOX}]},
    })


def _status_kb(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/self/status").read_text(),
                      re.MULTILINE)
    assert found is not None, field
    return int(found.group(1))


def add_memory_routes(app: Any) -> None:
    """/_bench/memory (GET: RSS, peak RSS, tracemalloc; POST: reset the peaks) and
    /_bench/trace (POST start|stop): the benchmark's view into this process."""
    import tracemalloc

    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def memory(request: Request) -> JSONResponse:
        if request.method == "POST":
            # Resets VmHWM to the current RSS (Linux >= 4.0).
            Path("/proc/self/clear_refs").write_text("5")
            if tracemalloc.is_tracing():
                tracemalloc.reset_peak()
        traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
        return JSONResponse({"rss": _status_kb("VmRSS") * 1024,
                             "peak_rss": _status_kb("VmHWM") * 1024,
                             "traced": traced[0], "traced_peak": traced[1]})

    async def trace(request: Request) -> JSONResponse:
        if request.path_params["what"] == "start":
            tracemalloc.start()
        else:
            tracemalloc.stop()
        return JSONResponse({"tracing": tracemalloc.is_tracing()})

    app.add_route("/_bench/memory", memory, methods=["GET", "POST"])
    app.add_route("/_bench/trace/{what}", trace, methods=["POST"])


def bare_app() -> Any:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    app = FastAPI()

    async def upload(request: Request) -> PlainTextResponse:
        with open(os.devnull, "wb") as sink:
            async for chunk in request.stream():
                sink.write(chunk)
        return PlainTextResponse("ok")

    app.add_route("/upload", upload, methods=["POST"])
    return app


def serve(kind: str, port: int, data_dir: Path, clamd_socket: str, concurrency: int) -> None:
    import uvicorn

    if kind == "portal":
        from gateway.portal.app import create_portal_app

        app = create_portal_app(settings_for(data_dir, clamd_socket, concurrency))
    else:
        app = bare_app()
    add_memory_routes(app)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the client -------------------------------------------------------------------------------


def multipart(token: str, payload: bytes, index: int) -> tuple[bytes, str]:
    boundary = f"----benchmark{index:08d}"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode() for name, value in {**FIELDS, "form_token": token}.items())
    file_head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                 f'filename="Bescheid-{index}.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
                 ).encode()
    body = head + file_head + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Target:
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def memory(self, reset: bool = False) -> dict[str, int]:
        answer = (httpx.post if reset else httpx.get)(self.url + "/_bench/memory", timeout=30)
        answer.raise_for_status()
        result: dict[str, int] = answer.json()
        return result

    def trace(self, on: bool) -> None:
        httpx.post(self.url + f"/_bench/trace/{'start' if on else 'stop'}",
                   timeout=30).raise_for_status()

    def batch(self, payloads: list[bytes], concurrency: int) -> float:
        """Upload every payload, ``concurrency`` at a time; seconds from first to last."""
        work = list(enumerate(payloads))
        lock = threading.Lock()
        failures: list[str] = []
        clients = [httpx.Client(base_url=self.url, timeout=300) for _ in range(concurrency)]

        def run(worker: int) -> None:
            client = clients[worker]
            while True:
                with lock:
                    if not work:
                        return
                    index, payload = work.pop()
                # As a browser: the form (its token and cookie) first, then the upload.
                body, content_type = multipart(self._token(client), payload, index)
                answer = client.post("/upload", content=body,
                                     headers={"Content-Type": content_type})
                if answer.status_code != 200 or (
                        self.name == "portal" and 'id="reference"' not in answer.text):
                    failures.append(f"{answer.status_code}: {answer.text[:300]}")

        threads = [threading.Thread(target=run, args=(n,)) for n in range(concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        for client in clients:
            client.close()
        if failures:
            raise RuntimeError(f"{self.name}: {len(failures)} upload(s) failed: {failures[0]}")
        return elapsed

    def _token(self, client: httpx.Client) -> str:
        if self.name != "portal":
            return "none"
        page = client.get("/")
        found = re.search(r'name="form_token" value="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        return found.group(1)


@contextmanager
def running_clamd(workdir: Path) -> Iterator[tuple[str, str]]:
    """The managed clamd as ``xgate serve`` starts it; yields (socket, version)."""
    from gateway.settings import load_settings
    from scanning.managed import ManagedClamd, repository_test_signatures

    settings = load_settings(None, data_dir=str(workdir / "clamd-var"), scanning={
        "test_signatures_dir": str(repository_test_signatures())})
    clamd = ManagedClamd(settings)
    clamd.start()
    try:
        yield str(clamd.socket_path), clamd.client.version()
    finally:
        clamd.stop()


@contextmanager
def server(kind: str, workdir: Path, clamd_socket: str, concurrency: int
           ) -> Iterator[Target]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                             "--data-dir", str(workdir / "var"), "--clamd-socket", clamd_socket,
                             "--concurrency", str(concurrency)], cwd=ROOT)
    try:
        wait_for_port(port)
        yield Target(kind, f"http://127.0.0.1:{port}")
    finally:
        stop_process(proc, 30)


def prepare(workdir: Path, clamd_socket: str) -> None:
    """Master key and schema for the portal's installation."""
    from crypto.at_rest import MasterKey
    from gateway.db import make_engine
    from gateway.migrate import upgrade

    settings = settings_for(workdir / "var", clamd_socket, 1)
    key = settings.resolve(settings.storage.master_key_file)
    key.parent.mkdir(parents=True, exist_ok=True)
    MasterKey.generate().write(key)
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.size_mb * MB)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, Any] = {"size_bytes": size, "uploads": args.uploads,
                               "rounds": args.rounds, "machine": platform.platform(),
                               "cpus": os.cpu_count(), "cases": []}
    with tempfile.TemporaryDirectory(prefix="xgate-portal-bench-") as tmp:
        workdir = Path(tmp)
        with running_clamd(workdir) as (clamd_socket, version):
            results["clamd"] = version
            prepare(workdir, clamd_socket)
            top = max(concurrencies)
            with server("portal", workdir, clamd_socket, top) as portal, \
                    server("bare", workdir, clamd_socket, top) as bare:
                # Warm up: imports, the first connections, clamd's first scans.
                for target in (portal, bare):
                    target.batch([os.urandom(size) for _ in range(2)], 1)
                for concurrency in concurrencies:
                    results["cases"].append(
                        case(portal, bare, size, concurrency, args.uploads, args.rounds))
            results["stages"] = stages(workdir, clamd_socket, size, args.rounds + 2)
    return results


def case(portal: Target, bare: Target, size: int, concurrency: int, uploads: int,
         rounds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"portal": [], "bare": []}
    peaks: dict[str, list[float]] = {"portal": [], "bare": []}
    for round_no in range(rounds):
        order = (portal, bare) if round_no % 2 == 0 else (bare, portal)
        for target in order:
            payloads = [os.urandom(size) for _ in range(uploads)]
            before = target.memory(reset=True)["rss"]
            seconds = target.batch(payloads, concurrency)
            after = target.memory()
            rates[target.name].append(uploads * size / MB / seconds)
            peaks[target.name].append((after["peak_rss"] - before) / concurrency / size)
            print(f"  c={concurrency} round {round_no + 1}: {target.name:<6} "
                  f"{rates[target.name][-1]:7.1f} MB/s, peak RSS +"
                  f"{(after['peak_rss'] - before) / MB:6.1f} MB", file=sys.stderr)
    # tracemalloc: one batch of `concurrency` uploads, not timed.
    portal.trace(True)
    try:
        portal.memory(reset=True)
        portal.batch([os.urandom(size) for _ in range(concurrency)], concurrency)
        traced_peak = portal.memory()["traced_peak"]
    finally:
        portal.trace(False)
    portal_rate = statistics.median(rates["portal"])
    bare_rate = statistics.median(rates["bare"])
    return {"concurrency": concurrency,
            "portal_mb_s": portal_rate, "bare_mb_s": bare_rate,
            "portal_share": portal_rate / bare_rate,
            "portal_peak_rss_per_upload": statistics.median(peaks["portal"]),
            "bare_peak_rss_per_upload": statistics.median(peaks["bare"]),
            "portal_tracemalloc_peak_per_upload": traced_peak / concurrency / size}


def stages(workdir: Path, clamd_socket: str, size: int, repeat: int) -> dict[str, float]:
    """Seconds per step for one file of ``size``, medians of ``repeat``."""
    import hashlib

    from crypto.at_rest import MasterKey
    from gateway.db import make_engine, make_session_factory, session_scope
    from gateway.models import utcnow
    from gateway.portal.scan import first_infected
    from gateway.portal.submission import Submission, UploadedFile, build, queue

    settings = settings_for(workdir / "var", clamd_socket, 1)
    master = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    times: dict[str, list[float]] = {"sha256": [], "scan": [], "build": [], "seal_store": []}
    try:
        for _ in range(repeat):
            data = os.urandom(size)
            started = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            hashed = time.perf_counter()
            assert first_infected(settings, [("Bescheid.pdf", data)]) is None
            scanned = time.perf_counter()
            now = utcnow()
            built = build(settings, Submission(TOPIC, MAILBOX, "Erika Mustermann", None, None,
                                               "Anbei.", [UploadedFile("Bescheid.pdf",
                                                                       "application/pdf",
                                                                       data)]), now)
            made = time.perf_counter()
            with session_scope(sessions) as session:
                queue(session, master, settings, built, now)
            stored = time.perf_counter()
            for name, seconds in (("sha256", hashed - started), ("scan", scanned - hashed),
                                  ("build", made - scanned), ("seal_store", stored - made)):
                times[name].append(seconds)
    finally:
        engine.dispose()
    return {name: statistics.median(values) for name, values in times.items()}


def report(results: dict[str, Any]) -> None:
    size_mb = results["size_bytes"] / MB
    print(f"portal upload: {results['uploads']} uploads of {size_mb:g} MB per batch, "
          f"{results['rounds']} rounds, medians; {results['cpus']} CPUs; {results['clamd']}")
    print(f"  {'concurrency':>11} {'portal MB/s':>12} {'bare MB/s':>10} {'share':>6} "
          f"{'peak RSS/upload':>16} {'tracemalloc/upload':>19} {'bare RSS/upload':>16}")
    for c in results["cases"]:
        print(f"  {c['concurrency']:>11} {c['portal_mb_s']:12.1f} {c['bare_mb_s']:10.1f} "
              f"{c['portal_share']:6.0%} {c['portal_peak_rss_per_upload']:15.2f}x "
              f"{c['portal_tracemalloc_peak_per_upload']:18.2f}x "
              f"{c['bare_peak_rss_per_upload']:15.2f}x")
    print("  (peaks as multiples of the upload size; goal: portal share >= 50 %, "
          "peak < 2x)")
    steps = results["stages"]
    print(f"  one {size_mb:g} MB file in process, seconds (medians): "
          + ", ".join(f"{name} {seconds:.3f}" for name, seconds in steps.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=8, help="uploads per batch")
    parser.add_argument("--size-mb", type=float, default=10.0, help="file size in MB")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated, e.g. 1,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    # Internal: run one of the servers (the benchmark starts these itself).
    parser.add_argument("--serve", choices=("portal", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clamd-socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.data_dir, args.clamd_socket,
              int(args.concurrency))
        return
    results = measure(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)


if __name__ == "__main__":
    main()
