"""The real relay transport: one SMTP session per call, to the route's next hop.

Why stdlib ``smtplib`` and not aiosmtplib: workers are threads that run a synchronous
pipeline, so a blocking client fits without an event loop per call, and the standard library
is one dependency fewer to vet for an office deployment. Only smtplib's reply-level
primitives are used (connect, EHLO/HELO, STARTTLS, docmd, send, getreply). The transaction is
written out here because ``sendmail()`` sends bytes exactly as given (bare LF and bare CR
included, which breaks dot-stuffing) and folds per-recipient refusals into exceptions.

Replies are mapped to recipients as RFC 5321 has it: a refused RCPT answers for that
recipient; a refusal of MAIL FROM or of DATA (either the 354 or the final reply) answers for
every recipient. Anything that leaves the session in an unknown state (refused connection,
timeout, dropped connection, a failed TLS handshake, an unreadable reply) raises
TransportError, and no smtplib or ssl exception leaves this module.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence

from crypto.canonical import is_canonical
from gateway.delivery.transport import RepliesHook, Reply, TransportError
from gateway.settings import RelayRoute, Settings, TlsPolicy
from gateway.smtp.transparency import has_dot_line

log = logging.getLogger(__name__)

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
# Once the final reply to DATA is in, the message is delivered; a server that is slow to
# answer QUIT must not hold the worker.
_QUIT_TIMEOUT_SECONDS = 5.0


def encode_data(data: bytes) -> bytes:
    """The DATA payload as it goes on the wire: CRLF lines, dot-stuffed, terminated."""
    return b"".join(wire_pieces(data))


def wire_pieces(data: bytes) -> tuple[bytes, bytes]:
    """``encode_data``'s payload in two pieces, sent one after the other: the content and the
    terminator, so that the usual message goes out without a copy of it.

    Stored messages should be CRLF already; a bare CR or LF is still turned into CRLF,
    because a server would read it as a line end (or not) at its own discretion, and
    dot-stuffing is only correct when every line end is CRLF.
    """
    if is_canonical(data) and not data.startswith(b".") and not has_dot_line(data):
        # The usual stored message: nothing to change. The regular expressions below took
        # about 150 ms for a 13.7 MB base64 message (a replacement for every one of its
        # 180,000 line ends), and a search for "CRLF ." 11 ms.
        return data, b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
    normalised = _LINE_BREAK.sub(b"\r\n", data)
    if not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    # RFC 5321 4.5.2: a line that starts with "." gets one more "." in front.
    return _LEADING_DOT.sub(b"..", normalised), b".\r\n"


class SmtpRelayTransport:
    """Transport over SMTP with the TLS policy of each route."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def send(self, route: RelayRoute, mail_from: str, recipients: Sequence[str],
             data: bytes, *, on_replies: RepliesHook | None = None) -> dict[str, Reply]:
        client, replies = self._exchange(route, mail_from, recipients, data)
        try:
            # Before QUIT: the caller records the delivery while the next hop waits for our
            # goodbye, so a crash cannot fall between its 250 and the end of the session.
            if on_replies is not None:
                on_replies(replies)
        finally:
            _close(client, polite=True)
        return replies

    def _exchange(self, route: RelayRoute, mail_from: str, recipients: Sequence[str],
                  data: bytes) -> tuple[smtplib.SMTP, dict[str, Reply]]:
        """Connect, EHLO, STARTTLS as the policy says, the transaction; the open session and
        the replies. On any error the session is dropped and TransportError raised."""
        hop = f"{route.host}:{route.port}"
        payload = wire_pieces(data)
        client: smtplib.SMTP | None = None
        finished = False
        try:
            # Connecting in the constructor is what makes smtplib remember route.host as the
            # name STARTTLS verifies the certificate against.
            client = smtplib.SMTP(route.host, route.port,
                                  local_hostname=self._settings.smtp.hostname,
                                  timeout=self._settings.delivery.connect_timeout_seconds)
            # The terminator follows the content in a send of its own: with Nagle's
            # algorithm it would wait for the next hop's acknowledgement of the content (up
            # to 40 ms of delayed ACK on Linux).
            if client.sock is not None:
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._start(client, route, hop)
            replies = _Transaction(client, hop, payload).run(mail_from, recipients)
            finished = True
            return client, replies
        except smtplib.SMTPConnectError as exc:
            raise TransportError(
                f"{hop} did not greet: {_reply_text(exc.smtp_code, exc.smtp_error)}") from exc
        except ssl.SSLError as exc:
            raise TransportError(f"TLS error with {hop}: {_describe(exc)}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransportError(f"connection to {hop} lost: {_describe(exc)}") from exc
        except smtplib.SMTPException as exc:
            raise TransportError(f"SMTP session with {hop} failed: {_describe(exc)}") from exc
        except TimeoutError as exc:
            raise TransportError(f"timed out talking to {hop}") from exc
        except OSError as exc:
            raise TransportError(f"cannot talk to {hop}: {_describe(exc)}") from exc
        finally:
            if client is not None and not finished:
                _close(client, polite=False)

    def _start(self, client: smtplib.SMTP, route: RelayRoute, hop: str) -> None:
        """EHLO and, as the route's policy says, STARTTLS."""
        _hello(client, hop)
        if route.tls is TlsPolicy.NONE:
            return
        if not client.has_extn("starttls"):
            if route.tls is TlsPolicy.VERIFY:
                raise TransportError(f"TLS required but not offered by {hop}")
            log.info("relay to %s: STARTTLS not offered; sending in plaintext", hop)
            return
        context = self._tls_context(route, hop)
        # A handshake that fails for another reason (ssl.SSLError, handled in send) defers
        # under either policy: the session cannot go on, and falling back to plaintext on a
        # new connection is a downgrade an attacker could provoke at will.
        try:
            client.starttls(context=context)
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"TLS certificate of {hop} not accepted: {exc.verify_message or exc}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # The server advertised STARTTLS and then refused it (e.g. 454). The session is
            # still plaintext and in a defined state, so opportunistic TLS may go on in it.
            refused = _reply_text(exc.smtp_code, exc.smtp_error)
            if route.tls is TlsPolicy.VERIFY:
                raise TransportError(f"TLS required but {hop} refused STARTTLS: {refused}"
                                     ) from exc
            log.info("relay to %s: STARTTLS refused (%s); sending in plaintext", hop, refused)
            return
        # RFC 3207 4.2: forget what was learnt before TLS; ask again inside it.
        _hello(client, hop)
        log.debug("relay to %s: TLS established", hop)

    def _tls_context(self, route: RelayRoute, hop: str) -> ssl.SSLContext:
        if route.tls is TlsPolicy.VERIFY:
            cafile = self._settings.resolve(route.ca_file) if route.ca_file else None
            try:
                # With a CA file only that file is trusted; without, the system store.
                context = ssl.create_default_context(
                    cafile=str(cafile) if cafile is not None else None)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(
                    f"CA file {cafile} for {hop} cannot be loaded: {_describe(exc)}") from exc
            # create_default_context already requires a chain and the name (route.host,
            # which smtplib passes as server_hostname); stated here so it cannot drift.
            context.verify_mode = ssl.CERT_REQUIRED
            context.check_hostname = True
        else:
            # Opportunistic: encryption against passive listening only. Verifying would
            # not help, since an active attacker can strip STARTTLS from the EHLO reply.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


class _Transaction:
    """MAIL, RCPT each, DATA: replies mapped to recipients."""

    def __init__(self, client: smtplib.SMTP, hop: str, payload: tuple[bytes, bytes]) -> None:
        self.client = client
        self.hop = hop
        self.payload = payload

    def run(self, mail_from: str, recipients: Sequence[str]) -> dict[str, Reply]:
        replies: dict[str, Reply] = {}
        sendable: list[str] = []
        utf8 = self.client.has_extn("smtputf8")
        for address in recipients:
            problem = _address_problem(address, utf8)
            if problem is None:
                sendable.append(address)
            else:
                replies[address] = Reply(553, f"{problem}; not sent to {self.hop}")
        sender_problem = _address_problem(mail_from, utf8)
        if sender_problem is not None:
            return {a: Reply(553, f"{sender_problem} (sender); not sent to {self.hop}")
                    for a in recipients}
        if not sendable:
            return replies

        options = self._mail_options(mail_from, sendable)
        reply = self._command("MAIL", f"FROM:<{mail_from}>{options}")
        if not reply.ok:
            return {**replies, **dict.fromkeys(sendable, reply)}

        accepted: list[str] = []
        for address in sendable:
            reply = self._command("RCPT", f"TO:<{address}>")
            if reply.code == 421:
                # The server is closing the session: nothing in it was delivered.
                return {**replies, **dict.fromkeys(sendable, reply)}
            replies[address] = reply
            if reply.ok:
                accepted.append(address)
        if not accepted:
            return replies

        reply = self._command("DATA", "")
        if reply.code == 354:
            for piece in self.payload:
                self.client.send(piece)
            reply = self._reply(*self.client.getreply())
        replies.update(dict.fromkeys(accepted, reply))
        return replies

    def _mail_options(self, mail_from: str, recipients: Sequence[str]) -> str:
        options: list[str] = []
        if self.client.has_extn("size"):
            options.append(f"SIZE={sum(map(len, self.payload))}")
        # Without 8BITMIME an 8-bit body is sent as it is: re-encoding would break
        # signatures, and nearly every server accepts it.
        # isascii, not a Python loop over the bytes: that took about half a second for a
        # 13.7 MB message, the longest part of relaying it.
        if self.client.has_extn("8bitmime") and not self.payload[0].isascii():
            options.append("BODY=8BITMIME")
        if not all(a.isascii() for a in (mail_from, *recipients)):
            options.append("SMTPUTF8")
            self.client.command_encoding = "utf-8"
        return "".join(" " + o for o in options)

    def _command(self, verb: str, args: str) -> Reply:
        return self._reply(*self.client.docmd(verb, args))

    def _reply(self, code: int, text: bytes) -> Reply:
        if not 200 <= code <= 599:
            # -1: smtplib could not read a reply code. The session is in an unknown state.
            raise TransportError(f"unintelligible reply from {self.hop}: "
                                 f"{_reply_text(code, text)}")
        return Reply(code, _text(text))


def _hello(client: smtplib.SMTP, hop: str) -> None:
    code, text = client.ehlo()
    if code == 250:
        return
    # A server that does not speak ESMTP: HELO, and no extensions (so no STARTTLS).
    code, text = client.helo()
    if code != 250:
        raise TransportError(f"{hop} refused EHLO and HELO: {_reply_text(code, text)}")


def _address_problem(address: str, utf8: bool) -> str | None:
    # The stored envelope came through our own SMTP edge, but a CR or LF here would let an
    # address inject commands into the session, so it is refused before anything is sent.
    if any(c in address for c in "\r\n\0"):
        return "5.1.3 address contains control characters"
    if not address.isascii() and not utf8:
        return "5.6.7 non-ASCII address and the next hop does not offer SMTPUTF8"
    return None


def _close(client: smtplib.SMTP, *, polite: bool) -> None:
    """End the session. QUIT only after a complete exchange: after an error the session's
    state is unknown (e.g. mid-TLS-handshake), and dropping it is the safe way out."""
    try:
        if polite and client.sock is not None:
            client.sock.settimeout(_QUIT_TIMEOUT_SECONDS)
            client.quit()
    except (smtplib.SMTPException, OSError) as exc:
        # The transaction's outcome is already decided; a failed goodbye changes nothing.
        log.debug("QUIT failed: %s", _describe(exc))
    finally:
        client.close()


def _text(raw: bytes) -> str:
    return " ".join(raw.decode("utf-8", "replace").split())


def _reply_text(code: int, raw: bytes | str) -> str:
    text = raw if isinstance(raw, str) else _text(raw)
    return f"{code} {text}".strip()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
