"""The parts ``xgate serve`` runs, each alone in its process: workers, web, SMTP.

Each returns the process's exit status. They stop cleanly on SIGTERM/SIGINT, and when started
by the supervisor they also stop if it disappears.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.checkpoint import WalCheckpointer
from gateway.metrics import enable_multiprocess, metrics_dir
from gateway.serve.supervisor import watch_parent
from gateway.settings import Settings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)


def stop_on_signals(stop: threading.Event) -> None:
    def _handler(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def run_until_stopped(part: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``part(stop)`` on a new event loop; ``stop`` is set on SIGTERM/SIGINT, or when the
    supervisor that started this process disappears."""

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def _orphaned() -> None:
            loop.call_soon_threadsafe(stop.set)

        watch_parent(_orphaned)
        await part(stop)

    asyncio.run(_main())


def run_workers(settings: Settings) -> int:
    """``settings.workers.count`` worker threads until stopped; 1 if one of them crashed."""
    # Before any metric exists in this process, so the samples land where /metrics reads.
    enable_multiprocess(metrics_dir(settings))
    from gateway.consent.holds import HoldExpiry
    from gateway.metrics import StageMetrics
    from gateway.pipeline.worker import Worker, prune_relay_journal, worker_name
    from gateway.queue.wake import Doorbell, listener_for
    from gateway.services import build_services
    from mailboxes.scheduler.runner import Scheduler

    services = build_services(settings)
    prune_relay_journal(services)
    # A worker thread that has just read the next hop's 250 must get the GIL back at once
    # to note the delivery (the window for a duplicate after a crash); with the default
    # 5 ms switch interval a helper thread (lease heartbeat, checkpoints) could hold it
    # that long.
    sys.setswitchinterval(0.001)
    checkpointer = WalCheckpointer(services.sessions.kw["bind"])
    checkpointer.start()
    hold_expiry = HoldExpiry(settings, services.sessions, services.master_key, services.clock)
    hold_expiry.start()
    # The one scheduler of this process (SLA and plausibility passes, the follow-up digest):
    # several worker processes may run one each; every due run is claimed once.
    scheduler = Scheduler(settings, services.sessions, services.master_key, services.clock,
                          owner=worker_name(0).rsplit(":", 1)[0] + ":scheduler")
    scheduler.start()
    timer = StageMetrics()
    stop = threading.Event()
    crashed = threading.Event()
    stop_on_signals(stop)
    watch_parent(stop.set)

    def _run(worker: Worker, doorbell: Doorbell | None) -> None:
        try:
            worker.run_forever(stop, doorbell)
        except Exception:
            # Worker.run_forever survives database outages; anything else is a bug. The
            # process exits non-zero so the supervisor restarts it; the message the thread
            # held is taken over by another worker once its lease expires.
            log.exception("%s crashed; stopping this worker process", worker.name)
            crashed.set()
            stop.set()

    # Woken when mail is stored (gateway.queue.wake); without, the workers poll.
    doorbell = Doorbell() if settings.workers.wake else None
    listener = (listener_for(settings, services.sessions.kw["bind"], doorbell)
                if doorbell is not None else None)
    if listener is not None:
        listener.start()
    threads = [threading.Thread(target=_run, name=f"worker-{i}",
                                args=(Worker(services, worker_name(i), timer=timer), doorbell))
               for i in range(settings.workers.count)]
    for thread in threads:
        thread.start()
    log.info("%d worker(s) running", len(threads))
    # A timed wait, so the signal handlers run promptly in this (the main) thread.
    while not stop.wait(0.5):
        pass
    if doorbell is not None:
        doorbell.ring()  # the idle workers see the stop now
    for thread in threads:
        thread.join()
    if listener is not None:
        listener.stop()
    checkpointer.stop()
    hold_expiry.stop()
    scheduler.stop()
    services.sessions.kw["bind"].dispose()
    log.info("workers stopped")
    return 1 if crashed.is_set() else 0


def run_clamd(settings: Settings) -> int:
    """The managed clamd (when no external clamd is configured), until SIGTERM."""
    from scanning.managed import run_clamd as run_managed_clamd

    stop = threading.Event()
    stop_on_signals(stop)
    watch_parent(stop.set)
    return run_managed_clamd(settings, stop)


def http_config(app: Any, settings: Settings, *, host: str, port: int, tls: bool,
                trusted_proxies: Sequence[str]) -> uvicorn.Config:
    """uvicorn's configuration for one of the web apps (staff app or citizen portal).

    HTTPS with [tls]'s certificate when ``tls``; plain HTTP otherwise, which browsers accept for
    the Secure session cookie on loopback only. X-Forwarded-For and -Proto are believed from
    ``trusted_proxies`` alone: the rate limits and the login throttle count the address a
    trusted proxy names, and a client elsewhere cannot choose its own.
    """
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_config=None, lifespan="on", server_header=False,
        proxy_headers=True, forwarded_allow_ips=list(trusted_proxies),
        ssl_certfile=settings.resolve(settings.tls.cert_file) if tls else None,
        ssl_keyfile=settings.resolve(settings.tls.key_file) if tls else None)


def _serve_http(config: uvicorn.Config, sockets: Sequence[socket.socket]) -> int:
    import uvicorn

    server = uvicorn.Server(config)

    def _exit() -> None:
        server.should_exit = True

    watch_parent(_exit)
    # uvicorn handles SIGTERM/SIGINT itself with a graceful shutdown.
    server.run(sockets=list(sockets) or None)
    return 0 if server.started else 1


def run_web(settings: Settings, sockets: Sequence[socket.socket] = ()) -> int:
    """The web app; on ``sockets`` when given (bound by ``xgate serve``, gateway.serve.listen)."""
    from admin_ui.app import create_app

    web = settings.web
    return _serve_http(http_config(create_app(settings), settings, host=web.host, port=web.port,
                                   tls=web.tls, trusted_proxies=web.trusted_proxies), sockets)


def run_portal(settings: Settings, sockets: Sequence[socket.socket] = ()) -> int:
    """The citizen portal (gateway.portal) on its own listener; on ``sockets`` when given."""
    from gateway.portal.app import create_portal_app

    portal = settings.portal
    return _serve_http(http_config(create_portal_app(settings), settings, host=portal.host,
                                   port=portal.port, tls=portal.tls,
                                   trusted_proxies=portal.trusted_proxies), sockets)


def run_smtp(settings: Settings,
             sockets: Mapping[str, Sequence[socket.socket]] | None = None) -> int:
    """The inbound and submission listeners (gateway.smtp) on one event loop; on
    ``sockets`` when given (bound by ``xgate serve``, gateway.serve.listen)."""
    from gateway.services import build_services
    from gateway.smtp.server import serve_smtp

    services = build_services(settings)
    checkpointer = WalCheckpointer(services.sessions.kw["bind"])
    checkpointer.start()
    # The intake committer thread holds the database's write lock while it runs Python
    # code; with the default 5 ms GIL switch interval the event loop could keep it (and so
    # the lock, which the workers need too) waiting for that long on every switch.
    sys.setswitchinterval(0.001)

    try:
        run_until_stopped(lambda stop: serve_smtp(services, stop, sockets))
    finally:
        checkpointer.stop()
        services.sessions.kw["bind"].dispose()
    log.info("SMTP listeners stopped")
    return 0
