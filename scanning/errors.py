"""Domain errors raised by the scanning package; socket and subprocess errors never cross it."""


class ScanningError(Exception):
    """Base of every error the scanning package raises."""


class ScannerUnavailable(ScanningError):
    """clamd could not give a verdict: down, timed out, busy, or it answered something we do
    not understand.

    Never a verdict about the content: the pipeline defers the message and tries again later
    (fail closed), it does not let it through unscanned.
    """


class ScanInterrupted(ScannerUnavailable):
    """clamd took the content and then gave no verdict: it went away or stopped answering
    while scanning it. Unlike clamd being unreachable for everyone, this may be the content's
    doing (a file that crashes or hangs clamd), so the pipeline counts it against the message
    (gateway.pipeline.stages.scan)."""


class ManagedClamdError(ScanningError):
    """The managed clamd cannot be set up or started: no signature database, clamd missing,
    a socket path too long, clamd exiting during start-up. Scanning is impossible, so
    ``xgate serve`` must stop instead of pretending to scan."""
