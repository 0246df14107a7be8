"""*Verify chain* as a background task (gateway.tasks): the very check of ``xgate audit
verify`` (gateway.audit.chain.verify) with its progress shown on the task's page, and the
run recorded in the trail with the user who started it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import audit
from gateway.audit import AuditAction
from gateway.db import read_scope, session_scope
from gateway.tasks.runner import TaskContext

KIND = "audit-verify"


def verify_chain(ctx: TaskContext) -> Mapping[str, Any]:
    totals: list[int] = []

    def progress(checked: int, total: int) -> None:
        totals.append(total)
        ctx.progress(checked, total, "")

    # One read-only pass over the whole trail (batches of 5,000, each expunged); the
    # progress is written in transactions of its own meanwhile.
    with read_scope(ctx.sessions) as session:
        result = audit.verify(session, progress=progress)
    # The last word on how far it got (a short or broken chain reports no batch).
    ctx.progress(result.checked, result.checked if result.ok else (totals[-1] if totals
                                                                   else None), "")
    outcome: dict[str, Any] = {"ok": result.ok, "checked": result.checked,
                               "first_broken_seq": result.first_broken_seq,
                               "problem": result.problem}
    with session_scope(ctx.sessions) as session:
        audit.record(session, actor=f"user:{ctx.started_by}",
                     action=AuditAction.AUDIT_CHAIN_VERIFIED,
                     detail={"verdict": "intact" if result.ok else "broken",
                             "checked": result.checked,
                             "first_broken_seq": result.first_broken_seq})
    return outcome
