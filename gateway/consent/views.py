"""Releases and decisions as plain JSON-able dicts: one shape for ``--json`` and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.consent.holds import HeldReport
from gateway.consent.records import VersionView
from gateway.models import HoldKind
from gateway.policy.consent import Decision, ReleaseTerms, local_date


def release_state(release: ReleaseTerms, now: datetime, tz: ZoneInfo) -> str:
    """"revoked", "expired", "not yet valid" or "active", as of ``now``."""
    if release.revoked_at is not None and release.revoked_at <= now:
        return "revoked"
    today = local_date(now, tz)
    if release.valid_until < today:
        return "expired"
    if today < release.valid_from:
        return "not yet valid"
    return "active"


def version_json(view: VersionView, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    r = view.release
    doc = view.document
    return {
        "id": r.id, "version": r.version, "case": r.case, "state": release_state(r, now, tz),
        "data_subjects": list(r.data_subjects),
        "granted_by": {"name": r.granted_by.name, "role": r.granted_by.role},
        "categories": sorted(r.categories),
        "recipients": [{"kind": ref.kind, "value": ref.value} for ref in r.recipients],
        "purpose": r.purpose,
        "valid_from": r.valid_from.isoformat(), "valid_until": r.valid_until.isoformat(),
        "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        "revoked_by": view.revoked_by,
        "recorded_by": view.recorded_by, "recorded_at": view.recorded_at.isoformat(),
        "note": view.note,
        "document": None if doc is None else {
            "filename": doc.filename, "content_type": doc.content_type, "size": doc.size,
            "sha256": doc.sha256},
    }


def decision_json(decision: Decision) -> dict[str, Any]:
    return {"verdict": decision.verdict.value, "reasons": list(decision.reasons),
            "releases": [{"id": i, "version": v} for i, v in decision.used],
            "ready": decision.ready}


def held_json(report: HeldReport) -> dict[str, Any]:
    facts = report.facts
    return {"queue_id": report.queue_id, "sender": report.mail_from,
            "received_at": report.received_at.isoformat(), "reason": report.reason,
            "recipients": list(report.recipients), "case": facts.get("consent:case"),
            "category": facts.get("consent:category"),
            "legal_basis": facts.get("consent:legal_basis"),
            "awaiting_approval": report.kind == HoldKind.STATUTORY_APPROVAL}
