"""``xgate serve``: everything in one supervised process tree, or one part alone."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.cli.common import head_revision, open_database, settings_from_args
from gateway.serve.part import (
    PARTS,
    PARTS_NEEDING_THE_SCHEMA,
    SCHEMA_HEAD_ENV,
    child_argv,
    run_part,
)
from gateway.settings import Settings


def managed_clamd_wanted(settings: Settings) -> bool:
    """No external clamd configured: xgate serve runs its own (the embedded default)."""
    return settings.scanning.clamd_socket is None and settings.scanning.clamd_host is None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="run the gateway (all parts, or one part alone)",
        description="Without PART: check the configuration and bind every listener, then "
                    "run the SMTP listeners, the workers and the web app, each as a child "
                    "process that is restarted if it dies (with backoff, for ever; the others "
                    "keep running); SIGTERM or SIGINT stops them all. With PART: run only that "
                    "part in this process (for systemd units, or parts on separate machines "
                    "that share a PostgreSQL database).")
    serve.add_argument("part", nargs="?", choices=PARTS, metavar="PART",
                       help="clamd (the managed virus scanner, when no external clamd is "
                            "configured), smtp (inbound and submission listeners), worker "
                            "(workers.count threads that process the queue; xgate serve starts "
                            "workers.processes of these), web "
                            "(the staff web app, health check and metrics), portal (the citizen "
                            "portal, when portal.enabled) or catcher (the demo "
                            "catcher, when demo.catcher.enabled)")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, serving=True)
    # Refuse to start on a missing or outdated database: better than workers that fail on
    # every poll. (The web part starts anyway and reports it on /healthz.)
    if args.part is None:
        engine = open_database(settings)
        # The parts check their database against this without alembic (gateway.serve.part).
        head = head_revision(engine)
        engine.dispose()
        assert head is not None  # the migrations have one head (tests/test_migrations.py)
        return _serve_all(Path(args.config), settings, head)
    if args.part in PARTS_NEEDING_THE_SCHEMA:
        open_database(settings).dispose()
    # Alone (e.g. under systemd), or as a child of an older xgate serve (then with the
    # sockets it bound for us).
    return run_part(settings, args.part)


def web_url(settings: Settings) -> str:
    """Where the staff web app is."""
    host = settings.web.host
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.web.tls else 'http'}://{host}:{settings.web.port}/"


def portal_url(settings: Settings) -> str:
    """Where the citizen portal listens (behind a proxy, citizens use portal.public_url)."""
    portal = settings.portal
    host = f"[{portal.host}]" if ":" in portal.host else portal.host
    return f"{'https' if portal.tls else 'http'}://{host}:{portal.port}/"


def listener_lines(settings: Settings) -> list[str]:
    lines = []
    for name, listener in (("inbound", settings.smtp.inbound),
                           ("submission", settings.smtp.submission)):
        if listener.enabled:
            lines.append(f"smtp {name:<10} on {listener.host}:{listener.port}")
    lines.append(f"web             on {web_url(settings)} (the staff web app; /healthz, "
                 "/metrics)")
    lines.append(f"workers         {settings.workers.processes} process(es) with "
                 f"{settings.workers.count} thread(s) each")
    if managed_clamd_wanted(settings):
        from scanning.managed import select_signatures

        test_only = select_signatures(settings).test_only
        lines.append("clamd           managed, " + (
            "WITH TEST SIGNATURES ONLY: real malware is not detected" if test_only
            else "with the system's signatures"))
    else:
        where = settings.scanning.clamd_socket or (
            f"{settings.scanning.clamd_host}:{settings.scanning.clamd_port}")
        lines.append(f"clamd           external, {where}")
    if settings.portal.enabled:
        lines.append(f"portal          on {portal_url(settings)} (the citizen portal)")
    catcher = settings.demo.catcher
    if catcher.enabled:
        lines.append(f"demo catcher    on {catcher.host}:{catcher.port} (keeps the mail the "
                     "gateway sends out; read it with: xgate demo mail list)")
    return lines


def _serve_all(config: Path, settings: Settings, schema_head: str) -> int:
    from gateway.delivery.staff_routes import warn_unrouted_staff
    from gateway.metrics import MULTIPROC_ENV, metrics_dir, part_status_file, reset_metrics_dir
    from gateway.serve.checks import check_before_serving
    from gateway.serve.listen import FDS_ENV, close_all, fds_env, fds_of
    from gateway.serve.supervisor import Child, Supervisor

    smtp_enabled = settings.smtp.inbound.enabled or settings.smtp.submission.enabled
    if managed_clamd_wanted(settings):
        from scanning.managed import select_signatures

        # Fails here, with the reason, when there is no signature database at all: better
        # than a clamd child that dies again and again.
        select_signatures(settings)
    parts = [p for p in PARTS if (p != "smtp" or smtp_enabled)
             and (p != "clamd" or managed_clamd_wanted(settings))
             and (p != "catcher" or settings.demo.catcher.enabled)
             and (p != "portal" or settings.portal.enabled)]
    # Every listener bound and what the parts need checked before anything says "serving"
    # (and before the metrics are reset: a second xgate serve by mistake must not wipe the
    # running one's); the SMTP and web parts inherit their sockets and keep them across
    # restarts.
    bound = check_before_serving(settings, parts)
    samples = metrics_dir(settings)
    reset_metrics_dir(samples)
    env = dict(os.environ)
    env[MULTIPROC_ENV] = str(samples)
    env[FDS_ENV] = fds_env(bound)
    env[SCHEMA_HEAD_ENV] = schema_head
    handed = {"smtp": fds_of({k: v for k, v in bound.items() if k.startswith("smtp.")}),
              "web": fds_of({k: v for k, v in bound.items() if k == "web"}),
              "portal": fds_of({k: v for k, v in bound.items() if k == "portal"})}
    # Each part through its lean entry, not the whole xgate command (gateway.serve.part).
    children = []
    for part in parts:
        if part == "worker":
            children += [Child(f"worker-{n}", child_argv(config, part))
                         for n in range(1, settings.workers.processes + 1)]
        else:
            children.append(Child(part, child_argv(config, part),
                                  pass_fds=handed.get(part, [])))
    supervisor = Supervisor(children, env, status_file=part_status_file(settings))
    supervisor.install_signal_handlers()
    print(f"xgate serving (pid {os.getpid()}); stop with Ctrl-C or SIGTERM", flush=True)
    for line in listener_lines(settings):
        print(f"  {line}", flush=True)
    for line in warn_unrouted_staff(settings):
        print(f"  WARNING: {line}", flush=True)
    try:
        status = supervisor.run()
    finally:
        close_all(bound)
    print("xgate stopped", flush=True)
    return status
