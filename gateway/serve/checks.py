"""What ``xgate serve`` checks before it says anything: the configuration each part needs,
and every listener bound.

A part that cannot start would otherwise be restarted for ever while the gateway claims to be
serving. Each problem is one line naming the configuration key, e.g.

    xgate: error: smtp.inbound port 127.0.0.1:2525 is in use
    xgate: error: tls.cert_file /etc/xgate/tls/cert.pem: no such file

The database (``open_database``) and the managed clamd's signatures are checked by
gateway.cli.serve before this runs (the database's revision, in a part that xgate serve
started, by gateway.serve.part).
"""

from __future__ import annotations

import socket
from collections.abc import Collection

from crypto.at_rest import MasterKey
from crypto.errors import CryptoError
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.operator_errors import CliError
from gateway.serve.listen import (
    Endpoint,
    ListenError,
    bind,
    bind_all,
    close_all,
    inherited,
    portal_endpoint,
    smtp_endpoints,
    web_endpoint,
)
from gateway.settings import Settings
from gateway.tls import build_server_context
from mailboxes.directory import find_mailbox

# Bound sockets by configuration key ("smtp.inbound", "smtp.submission", "web", "portal").
Bound = dict[str, list[socket.socket]]


def check_before_serving(settings: Settings, parts: Collection[str]) -> Bound:
    """Check what ``parts`` need and bind their listeners; the sockets, to hand over.

    A part started by ``xgate serve`` finds its sockets already bound (inherited) and uses
    those. Raises an operator error (one line) for the first problem; then nothing is left
    bound.
    """
    smtp = "smtp" in parts and bool(smtp_endpoints(settings))
    if smtp:
        # TlsError names tls.cert_file / tls.key_file.
        build_server_context(settings)
    portal = "portal" in parts
    if portal:
        if not settings.portal.enabled:
            raise CliError("portal.enabled is false: the citizen portal is switched off")
        if settings.portal.tls:
            build_server_context(settings)
        _check_portal_topics(settings)
    if smtp or "worker" in parts or portal:
        # The portal seals every submission into the queue with the master key.
        _check_master_key(settings)
    endpoints: list[Endpoint] = []
    if smtp:
        endpoints += smtp_endpoints(settings)
    if "web" in parts:
        endpoints.append(web_endpoint(settings))
    if portal:
        endpoints.append(portal_endpoint(settings))
    bound: Bound = {}
    missing: list[Endpoint] = []
    for endpoint in endpoints:
        handed = inherited(endpoint.key)
        if handed:
            bound[endpoint.key] = handed
        else:
            missing.append(endpoint)
    try:
        bound.update(bind_all(missing))
        _check_free(settings, parts)
    except ListenError as exc:
        close_all(bound)
        raise CliError(str(exc)) from None
    except BaseException:
        close_all(bound)
        raise
    return bound


def _check_portal_topics(settings: Settings) -> None:
    """Every topic files into an existing shared mailbox: a submission to one that does not
    exist would be refused only later, by the worker, after the citizen saw a receipt."""
    # The schema was checked before (see above); gateway.cli.common's open_database would
    # import alembic into the parts xgate serve starts (gateway.serve.part), which do without.
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            for topic in settings.portal.topics:
                if find_mailbox(session, topic.mailbox) is None:
                    raise CliError(f"portal.topics: {topic.name!r} files into "
                                   f"{topic.mailbox}, which is not a shared mailbox "
                                   "(xgate mailbox add)")
    finally:
        engine.dispose()


def _check_master_key(settings: Settings) -> None:
    path = settings.resolve(settings.storage.master_key_file)
    try:
        MasterKey.load(path)
    except CryptoError as exc:
        raise CliError(f"storage.master_key_file: {exc}") from None


def _check_free(settings: Settings, parts: Collection[str]) -> None:
    """Listeners of parts that bind for themselves (the demo catcher): free right now."""
    catcher = settings.demo.catcher
    if "catcher" in parts and catcher.enabled:
        close_all({"demo.catcher": bind(Endpoint("demo.catcher", catcher.host,
                                                 catcher.port))})
