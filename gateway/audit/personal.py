"""Which parts of an audit entry are personal data, to be sealed under a retention key.

Generic rather than per action, and failing closed: a detail field stays in the clear only
if its name is listed in ``CLEAR_FIELDS`` (states, verdicts, counts, key facts, references
to our own records); every other field, including any a new feature adds without thinking
of this list, is sealed. Free text (reasons, notes, SMTP replies, scan reports that name
attachments) is sealed too: it may hold addresses or names. The actor is clear only when it
is one of the gateway's own processes (a worker, an SMTP listener, a periodic job); a
person's user name, in whatever form, is sealed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLEAR_FIELDS = frozenset({
    # A message's way: direction, size, the pipeline's stage and attempt, its timing.
    "direction", "size", "stage", "attempt", "next_attempt_at", "noted_at", "recorded_from",
    "relay", "dsn", "previous_state", "state", "verdict",
    # Keys: facts about the key, not about its holder.
    "own_key_id", "kind", "fingerprint", "algorithm", "not_after", "from", "source", "how",
    "admin",
    # Consent: references to the register's own (sealed) records and how they were read.
    "release", "version", "versions", "releases", "document", "via", "revoked_at",
    "consent:releases",
    # Shared mailboxes.
    "sensitive",
    # The trail itself (resealing, destroyed keys).
    "old_head_seq", "old_head_hash", "entries_resealed", "periods",
})

# The gateway's own processes: worker:<host>:<pid>:<n> (or worker-<n>), smtp:<listener>,
# the periodic jobs and the quarantine re-scan, the migration that resealed the trail.
_PROCESS_ACTOR = re.compile(
    r"(worker([:-][\w.:-]+)?|smtp:\w+|rescan|quarantine-rescan|consent-hold-expiry"
    r"|key-expiry-warning|migration:\w+)")


def is_process_actor(actor: str) -> bool:
    return _PROCESS_ACTOR.fullmatch(actor) is not None


@dataclass(frozen=True)
class Split:
    actor: str  # "" when the actor is a person (then it is in ``personal``)
    detail: dict[str, Any]
    personal: dict[str, Any] | None  # None: nothing to seal


def split(actor: str, detail: Mapping[str, Any]) -> Split:
    clear = {k: v for k, v in detail.items() if k in CLEAR_FIELDS}
    personal: dict[str, Any] = {}
    hidden = {k: v for k, v in detail.items() if k not in CLEAR_FIELDS}
    if hidden:
        personal["detail"] = hidden
    if not is_process_actor(actor):
        personal["actor"] = actor
    return Split("" if "actor" in personal else actor, clear, personal or None)


def merge(clear_actor: str, clear_detail: Mapping[str, Any],
          personal: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The entry as it was recorded: the clear part with the opened personal part."""
    if personal is None:
        return clear_actor, dict(clear_detail)
    return (str(personal.get("actor", clear_actor)),
            {**clear_detail, **personal.get("detail", {})})
