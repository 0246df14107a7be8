"""Outbound: may this report leave? The consent gate (releases from confidentiality).

Runs after scanning and before the key policy, signing and encryption: a report nobody may
receive is held before anyone hunts for a key for it, and nothing is signed in the office's
name that must not go. Only mail leaving the office is gated; shared mailboxes and the
internal mail server are inside.
"""

from __future__ import annotations

from itertools import chain

from sqlalchemy.orm import Session

from gateway.consent.classify import Classification, classify
from gateway.consent.gate import evaluate, recipient_facts
from gateway.consent.holds import CONSENT_HOLD_PREFIX, STATUTORY_HOLD_PREFIX, approvers_of
from gateway.consent.records import known_cases, releases_for_case
from gateway.consent.references import case_references, leading_texts
from gateway.db import read_scope
from gateway.delivery.notices import Bilingual
from gateway.delivery.routes import Route
from gateway.mime.headers import replace_header
from gateway.mime.parsed import parse_message
from gateway.models import HoldKind
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Hold, Reject
from gateway.policy.consent import Decision, Verdict, normalise_case
from gateway.services import Services
from gateway.settings import ConsentSettings, RelayRoute
from mailboxes.directory import find_mailbox


def _how_to_release(expiry_days: int) -> Bilingual:
    return Bilingual(
        "Er wird von selbst gesendet, sobald eine Schweigepflichtentbindung erfasst ist, die "
        f"ihn deckt. Geschieht das nicht innerhalb von {expiry_days} Tagen, erhalten Sie ihn "
        "als unzustellbar zurück. Bitte geben Sie die Referenz an.",
        "It goes out by itself as soon as a release from confidentiality that covers it is "
        f"recorded. If none is within {expiry_days} days, it comes back to you as "
        "undeliverable. Please quote the reference.")


def leaves_office(route: Route) -> bool:
    return isinstance(route, RelayRoute) and not route.internal


def _listing(decisions: dict[str, Decision]) -> str:
    return "; ".join(f"{address}: {', '.join(d.reasons)}" for address, d in decisions.items())


class ConsentStage:
    name = "consent"

    def run(self, ctx: MessageContext, services: Services) -> None:
        if not ctx.mail_from:
            return  # the gateway's own notices carry no one's data
        external = [a for a in ctx.pending if leaves_office(ctx.routes[a])]
        if not external:
            return
        settings = services.settings.consent
        subject = ctx.headers().get("Subject")
        with read_scope(services.sessions) as session:
            text = str(subject) if subject else None
            found = classify(ctx.consent_request, text, sensitive_mailbox=False,
                             settings=settings)
            if not found.sensitive:
                # Only now the mailbox: a tagged report needs no look-up for it.
                mailbox = find_mailbox(session, ctx.mail_from)
                sensitive = bool(mailbox and mailbox.sensitive)
                # And only then the text: a forgotten tag must not let a report of a case
                # in the register leave unchecked.
                named = () if sensitive else self._named_cases(ctx, text, settings, session)
                if not (sensitive or named):
                    return
                found = classify(ctx.consent_request, text, sensitive_mailbox=sensitive,
                                 settings=settings, named_cases=named)
            self._record_classification(ctx, found)
            if found.problems:
                problems = "; ".join(found.problems)
                raise Hold(CONSENT_HOLD_PREFIX + problems, kind=HoldKind.CONSENT, notice=Bilingual(
                    "Dies ist ein vertraulicher Bericht, aber das Gateway kann nicht "
                    f"erkennen, welche Schweigepflichtentbindung er braucht: {problems}. "
                    "Bitte senden Sie ihn mit den fehlenden Angaben erneut.",
                    "This is a sensitive report, but the gateway cannot tell which consent "
                    f"it needs: {problems}. Send it again with the missing details."))
            assert found.case is not None and found.category is not None
            releases = releases_for_case(session, found.case)
            # Approvals matter only for a transfer on a legal basis.
            approvals = (approvers_of(session, ctx.message_id) if found.legal_basis else ())
            facts = {a: recipient_facts(session, case=found.case, category=found.category,
                                        recipient=a, sender=ctx.mail_from,
                                        legal_basis=found.legal_basis,
                                        justification=found.justification,
                                        approvals=approvals) for a in external}
        now = services.clock()
        decisions = {a: evaluate(f, releases, settings, now) for a, f in facts.items()}
        for address, decision in decisions.items():
            ctx.facts[f"consent:{address}"] = f"{decision.verdict.value}: " + "; ".join(
                decision.reasons)
        self._conclude(ctx, found, decisions, tuple(settings.approvers),
                       settings.hold_expiry_days)

    @staticmethod
    def _named_cases(ctx: MessageContext, subject: str | None, settings: ConsentSettings,
                     session: Session) -> list[str]:
        """The register's cases that the subject or the leading text names."""
        parsed = ctx.parsed or parse_message(ctx.body)
        texts = chain((subject or "",),
                      leading_texts(parsed, settings.case_reference_scan_bytes))
        return known_cases(session, case_references(texts, settings.case_reference_pattern))

    def _record_classification(self, ctx: MessageContext, found: Classification) -> None:
        ctx.facts["consent:source"] = found.source or ""
        if found.case:
            ctx.facts["consent:case"] = found.case
            ctx.case_reference = normalise_case(found.case)
        if found.category:
            ctx.facts["consent:category"] = found.category
        if found.legal_basis:
            ctx.facts["consent:legal_basis"] = found.legal_basis

    def _conclude(self, ctx: MessageContext, found: Classification,
                  decisions: dict[str, Decision], approvers: tuple[str, ...],
                  expiry_days: int) -> None:
        by_verdict: dict[Verdict, dict[str, Decision]] = {}
        for address, decision in decisions.items():
            by_verdict.setdefault(decision.verdict, {})[address] = decision
        if Verdict.DENY in by_verdict:
            denied = by_verdict[Verdict.DENY]
            ctx.facts["consent:verdict"] = Verdict.DENY.value
            # Final: the person withdrew or let lapse their consent. The sender learns why
            # from the bounce; a new release needs a new message.
            raise Reject(CONSENT_HOLD_PREFIX + "denied: " + _listing(denied))
        if Verdict.HOLD in by_verdict:
            held = by_verdict[Verdict.HOLD]
            ctx.facts["consent:verdict"] = Verdict.HOLD.value
            listing = _listing(held)
            then = _how_to_release(expiry_days)
            raise Hold(CONSENT_HOLD_PREFIX + listing, kind=HoldKind.CONSENT, notice=Bilingual(
                "Keine Schweigepflichtentbindung deckt diesen Bericht zum Aktenzeichen "
                f"{found.case} ({found.category}): {listing}. {then.de}",
                "No release from confidentiality covers this report for case "
                f"{found.case} ({found.category}): {listing}. {then.en}"))
        waiting = {a: d for a, d in by_verdict.get(Verdict.STATUTORY, {}).items()
                   if not d.ready}
        if waiting:
            ctx.facts["consent:verdict"] = Verdict.STATUTORY.value
            listing = _listing(waiting)
            raise Hold(f"{STATUTORY_HOLD_PREFIX} on {found.legal_basis}: {listing}",
                       kind=HoldKind.STATUTORY_APPROVAL,
                       notice=self._statutory_notice(found, listing, approvers),
                       inform=approvers,
                       inform_text=self._approval_request(ctx, found, listing))
        self._allow(ctx, found, decisions)

    @staticmethod
    def _statutory_notice(found: Classification, listing: str,
                          approvers: tuple[str, ...]) -> Bilingual:
        if approvers:
            told = Bilingual(f"Benachrichtigt wurden: {', '.join(approvers)}.",
                             f"Told: {', '.join(approvers)}.")
        else:
            told = Bilingual("Es sind keine Zustimmenden eingetragen (consent.approvers), "
                             "niemand sonst wurde benachrichtigt: Bitte sprechen Sie eine "
                             "zweite Person selbst an.",
                             "No approvers are configured (consent.approvers), so nobody else "
                             "has been told: please ask a second person yourself.")
        return Bilingual(
            "Dieser Bericht soll ohne Schweigepflichtentbindung auf der Rechtsgrundlage "
            f"{found.legal_basis} gesendet werden: {listing}. Eine zweite Person muss "
            "zustimmen (xgate consent approve, mit der Referenz); danach wird er gesendet. "
            + told.de,
            f"This report is to go on the legal basis {found.legal_basis} without consent: "
            f"{listing}. A second person has to approve it (xgate consent approve, with the "
            "reference); it goes out once approved. " + told.en)

    @staticmethod
    def _approval_request(ctx: MessageContext, found: Classification,
                          listing: str) -> Bilingual:
        recipients = ", ".join(ctx.pending)
        return Bilingual(
            f"{ctx.mail_from} möchte einen Bericht ohne Schweigepflichtentbindung auf der "
            f"Rechtsgrundlage {found.legal_basis} senden (Referenz {ctx.queue_id}).\n\n"
            f"Aktenzeichen: {found.case}\nKategorie: {found.category}\n"
            f"Empfänger: {recipients}\n"
            f"Begründung: {found.justification or '(keine angegeben)'}\n"
            f"Stand: {listing}\n\n"
            "Er wird erst gesendet, wenn eine zweite Person (nicht der Absender) zustimmt: "
            f"xgate consent approve {ctx.queue_id} --by NAME --reason TEXT, oder über die API.",
            f"{ctx.mail_from} wants to send a report without consent, on the legal basis "
            f"{found.legal_basis} (reference {ctx.queue_id}).\n\n"
            f"Case: {found.case}\nCategory: {found.category}\n"
            f"Recipients: {recipients}\n"
            f"Justification: {found.justification or '(none given)'}\n"
            f"State: {listing}\n\n"
            "It leaves only when a second person, not the sender, approves it: "
            f"xgate consent approve {ctx.queue_id} --by NAME --reason TEXT, or the API.")

    def _allow(self, ctx: MessageContext, found: Classification,
               decisions: dict[str, Decision]) -> None:
        used = tuple(sorted({ref for d in decisions.values() for ref in d.used}))
        statutory = any(d.verdict == Verdict.STATUTORY for d in decisions.values())
        ctx.consent_used = used
        ctx.facts["consent:verdict"] = (Verdict.STATUTORY if statutory
                                        else Verdict.ALLOW).value
        if used:
            ctx.facts["consent:releases"] = ", ".join(f"{i} v{v}" for i, v in used)
        assert found.case is not None and found.category is not None
        protected = {"X-Xgate-Case": found.case, "X-Xgate-Category": found.category}
        if used:
            protected["X-Xgate-Release"] = ", ".join(f"{i} v{v}" for i, v in used)
        if statutory and found.legal_basis:
            protected["X-Xgate-Legal-Basis"] = found.legal_basis
        ctx.protected_headers.update(protected)
        if found.clean_subject is not None:
            # The tag is the office's filing note; the recipient gets the case in the
            # protected X-Xgate-Case field instead, not on the readable envelope.
            ctx.content = replace_header(ctx.body, "Subject", found.clean_subject)
            ctx.parsed = None
