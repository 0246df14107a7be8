"""Every reply the SMTP edge itself sends, with its RFC 3463 enhanced status code.

Replies that aiosmtpd produces on its own (syntax errors, line too long, 530 before AUTH)
keep aiosmtpd's wording; these are the ones our code decides, and the ones where aiosmtpd's
reply lacks the enhanced status code a client's bounce needs (see REPLACED_REPLIES).

Rule of the edge: a 5xx says the *client's* message or command is wrong and retrying the same
thing will not help. Anything that is our fault (database, storage, a bug) is a 4xx, so the
sender's MTA keeps the message and tries again.
"""

from __future__ import annotations

# Connection level.
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"

# MAIL / RCPT.
SENDER_OK = "250 2.1.0 Ok"
RECIPIENT_OK = "250 2.1.5 Ok"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
NULL_SENDER_NOT_ALLOWED = "550 5.7.1 Submission needs a sender address"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
UNKNOWN_RECIPIENT = "550 5.1.1 Recipient address rejected: not accepted here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"

# DATA: the content checks, in the order they run.
# 5.6.11 as Exchange Online answers bare LF; the text says which one was found, so that
# whoever runs a broken script sees what to fix (and not "Line too long": without CRLF the
# whole message is one line).
BARE_LF = "550 5.6.11 Line ends must be CRLF (bare LF received)"
BARE_CR = "550 5.6.11 Line ends must be CRLF (bare CR received)"
NUL_IN_CONTENT = "550 5.6.0 Message contains NUL characters"
HEADERS_TOO_LARGE = "552 5.3.4 Message header block too large"
# More DATA than smtp.max_message_bytes, or a larger SIZE= announced with MAIL FROM.
MESSAGE_TOO_LARGE = "552 5.3.4 Message size exceeds fixed maximum message size"
QUEUED = "250 2.0.0 Ok: queued as {queue_id}"

# AUTH (RFC 4954).
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_MALFORMED = "501 5.5.2 Cannot decode the authentication data"
AUTH_TEMPORARY_FAILURE = "454 4.7.0 Temporary authentication failure"
# The login throttle (gateway.staff.throttle) locks this user name or client address for now.
AUTH_THROTTLED = "454 4.7.0 Too many failed authentication attempts, try again later"

# Our own fault: never details, never a 5xx.
TEMPORARY_FAILURE = "451 4.3.0 Temporary local problem, please try again later"


def queued(queue_id: str) -> str:
    return QUEUED.format(queue_id=queue_id)

# Submission: the envelope sender is not one the authenticated staff user may use.
SENDER_NOT_OWNED = "553 5.7.1 Sender address not allowed for this login"
# Submission: MAIL before a successful AUTH.
AUTH_REQUIRED = "530 5.7.0 Authentication required"

# aiosmtpd's own replies (matched exactly) that go out as ours instead: RFC 3463 codes, so a
# sender's bounce says what went wrong.
REPLACED_REPLIES = {
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_LARGE,
}
