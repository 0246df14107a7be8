"""The upload's files scanned in the request, so an infected one is refused while the
citizen is still on the page (the pipeline scans the queued message again, as all mail).

clamd down or slow is not the citizen's problem: the submission is taken, and the pipeline's
scan stage (which defers until clamd answers, fail closed) decides later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.settings import Settings
from scanning.clamd_client import ClamdClient
from scanning.errors import ScannerUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Infected:
    filename: str
    signature: str


def first_infected(settings: Settings, files: Sequence[tuple[str, bytes | memoryview]]
                   ) -> Infected | None:
    client = ClamdClient.from_settings(settings)
    for name, data in files:
        try:
            answer = client.instream(data)
        except ScannerUnavailable as exc:
            log.warning("portal upload not scanned in the request (%s); the pipeline scans it",
                        exc)
            return None
        if answer.infected is not None:
            return Infected(name, answer.infected)
    return None
