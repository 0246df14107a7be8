"""The office's own Web Key Directory (draft-koch-openpgp-webkey-service, section 3.1).

Partners and citizens whose mail client looks keys up by address (gpg --locate-keys,
Thunderbird, Outlook with GpgOL) find the office's OpenPGP keys here:

* direct method: ``https://<domain>/.well-known/openpgpkey/hu/<hash>?l=<local>``; the
  domain is the request's host;
* advanced method: ``https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>``;
  the domain is in the path;
* the ``policy`` file of each (empty: no policy flags, no submission service).

A key is the binary (not armored) public key, ``application/octet-stream``, with only the
user id of the address asked for. No login: this is public by design, and nothing but the
keys in use is served. The web listener speaks plain HTTP; HTTPS for the host names above
is the office's reverse proxy's, which should forward only ``/.well-known/openpgpkey/`` to
the internet (the admin API lives on the same listener).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from gateway.clock import Clock
from gateway.db import read_scope
from gateway.keydir.publish import wkd_domains, wkd_key
from gateway.settings import Settings

_PREFIX = "/.well-known/openpgpkey"
# Web clients (e.g. a web mailer's JavaScript) may fetch keys from any origin (draft 3.1).
_HEADERS = {"Access-Control-Allow-Origin": "*"}
# z-base-32 of a SHA-1: 32 characters of this alphabet.
_ZBASE32 = frozenset("ybndrfg8ejkmcpqxot1uwisza345h769")


def wkd_router(sessions: sessionmaker[Session], clock: Clock, settings: Settings) -> APIRouter:
    router = APIRouter()
    local_domains = settings.gateway.local_domains

    def served(domain: str) -> bool:
        with read_scope(sessions) as session:
            return domain in wkd_domains(session, local_domains)

    def key(domain: str, digest: str) -> Response:
        if len(digest) != 32 or not set(digest) <= _ZBASE32:
            return _not_found()
        with read_scope(sessions) as session:
            data = wkd_key(session, domain, digest, clock())
        if data is None:
            return _not_found()
        return Response(data, media_type="application/octet-stream", headers=_HEADERS)

    def policy(domain: str) -> Response:
        if not served(domain):
            return _not_found()
        return Response(b"", media_type="text/plain", headers=_HEADERS)

    # Plain ``def``: FastAPI runs these in its thread pool, off the event loop.
    @router.get(_PREFIX + "/hu/{digest}")
    def direct_key(digest: str, request: Request) -> Response:
        return key(_host_domain(request), digest)

    @router.get(_PREFIX + "/policy")
    def direct_policy(request: Request) -> Response:
        return policy(_host_domain(request))

    @router.get(_PREFIX + "/{domain}/hu/{digest}")
    def advanced_key(domain: str, digest: str) -> Response:
        return key(domain.lower(), digest)

    @router.get(_PREFIX + "/{domain}/policy")
    def advanced_policy(domain: str) -> Response:
        return policy(domain.lower())

    return router


def _host_domain(request: Request) -> str:
    """The domain of a direct-method request: its Host, without port and trailing dot."""
    host = (request.headers.get("host") or "").strip().lower()
    if host.startswith("["):  # an IPv6 literal has no domain
        return ""
    return host.rpartition(":")[0].removesuffix(".") if ":" in host \
        else host.removesuffix(".")


def _not_found() -> Response:
    return Response(b"no key\n", status_code=404, media_type="text/plain", headers=_HEADERS)
