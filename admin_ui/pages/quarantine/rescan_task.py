"""The re-scan of every quarantined and held message after a signature update, as a
background task of the console (gateway.tasks): ``xgate quarantine rescan`` in the web app.

The work is gateway.quarantine.records.rescan_all, the CLI's function: one short transaction
per message, each verdict audited with the admin who started the run, nothing released (a
message that now scans clean waits for two admins). Progress goes to the task's page. A
scanner that cannot be reached ends the task as failed, with the verdicts so far kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crypto.at_rest import MasterKey
from gateway.quarantine.records import Rescanner, rescan_all
from gateway.tasks.runner import TaskContext, TaskWork

KIND = "quarantine-rescan"


def rescan_work(master_key: Callable[[], MasterKey],
                rescanner: Callable[[], Rescanner]) -> TaskWork:
    def work(ctx: TaskContext) -> Mapping[str, Any]:
        # Made first: without a scanner there is no point opening anything.
        scanner = rescanner()
        summary = rescan_all(
            ctx.sessions, master_key(), scanner, actor=f"admin:{ctx.started_by}",
            clock=ctx.clock,
            progress=lambda done, total: ctx.progress(done, total, ""))
        return {"total": summary.total, "clean": summary.clean,
                "not_clean": summary.not_clean, "unreadable": summary.unreadable,
                "skipped": summary.skipped, "now_clean": list(summary.now_clean)}
    return work
