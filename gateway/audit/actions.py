"""Every action the audit trail records, as one enumeration.

The values are the strings stored in ``audit_log.action`` and covered by each entry's hash, so
they never change: a renamed value would make old entries mean something else and break
verification. A StrEnum member is a ``str``, so hashing it gives the same digest as before.
Add a member here before recording a new kind of entry; ``audit.record`` refuses anything else.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # A message's way through the queue. The pipeline's outcomes are recorded under the name
    # of the state they lead to (see gateway.pipeline.dispositions).
    RECEIVED = "received"
    DELIVERED = "delivered"
    HELD = "held"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    RETRY = "retry"
    REQUEUED = "requeued"
    LEASE_EXPIRED = "lease-expired"

    # Quarantine.
    QUARANTINE_RELEASE_APPROVAL = "quarantine-release-approval"
    QUARANTINE_RELEASE_REFUSED = "quarantine-release-refused"
    QUARANTINE_RELEASED = "quarantine-released"
    QUARANTINE_DELETED = "quarantine-deleted"
    QUARANTINE_RESCANNED = "quarantine-rescanned"

    # Consent and statutory transfers.
    CONSENT_ADDED = "consent-added"
    CONSENT_CHANGED = "consent-changed"
    CONSENT_REVOKED = "consent-revoked"
    CONSENT_READ = "consent-read"
    CONSENT_LISTED = "consent-listed"
    CONSENT_DOCUMENT_READ = "consent-document-read"
    CONSENT_RECHECK = "consent-recheck"
    CONSENT_HOLD_EXPIRED = "consent-hold-expired"
    STATUTORY_APPROVED = "statutory-approved"

    # Partners and their keys.
    PARTNER_ADDED = "partner-added"
    PARTNER_CHANGED = "partner-changed"
    PARTNER_REMOVED = "partner-removed"
    PARTNER_ADDRESS_ADDED = "partner-address-added"
    PARTNER_ADDRESS_REMOVED = "partner-address-removed"
    KEY_ADDED = "key-added"
    KEY_HARVESTED = "key-harvested"
    KEY_ASSIGNED = "key-assigned"
    KEY_REFRESHED = "key-refreshed"
    KEY_APPROVED = "key-approved"
    KEY_REJECTED = "key-rejected"
    KEY_REVOKED = "key-revoked"
    OWN_KEY_ADDED = "own-key-added"
    OWN_KEY_RETIRED = "own-key-retired"

    # Staff.
    USER_ADDED = "user-added"
    USER_ADDRESS_ADDED = "user-address-added"
    USER_ADDRESS_REMOVED = "user-address-removed"
    USER_DISABLED = "user-disabled"
    USER_ENABLED = "user-enabled"
    USER_PASSWORD_CHANGED = "user-password-changed"  # noqa: S105 (an action name)
    ADMIN_GRANTED = "admin-granted"
    ADMIN_REVOKED = "admin-revoked"
    ROLE_GRANTED = "role-granted"
    ROLE_REVOKED = "role-revoked"
    API_TOKEN_CREATED = "api-token-created"  # noqa: S105 (an action name)
    API_TOKEN_REVOKED = "api-token-revoked"  # noqa: S105 (an action name)
    SECOND_FACTOR_ENROLLED = "second-factor-enrolled"
    WEB_LOGIN = "web-login"
    WEB_LOGOUT = "web-logout"
    WEB_LOGOUT_EVERYWHERE = "web-logout-everywhere"
    SECOND_FACTOR_RESET = "second-factor-reset"
    RECOVERY_CODE_USED = "recovery-code-used"

    # Shared mailboxes.
    MAILBOX_ADDED = "mailbox-added"
    MAILBOX_CHANGED = "mailbox-changed"
    MAILBOX_MEMBER_ADDED = "mailbox-member-added"
    MAILBOX_MEMBER_REMOVED = "mailbox-member-removed"

    # Tickets: reading content, and replies sent as the mailbox (everything else a ticket
    # goes through is in its own history).
    TICKET_CONTENT_READ = "ticket-content-read"
    TICKET_REPLY_SUBMITTED = "ticket-reply-submitted"

    # The hotline (mailboxes.hotline): the topic catalogue, calls, callbacks, follow-ups,
    # links and merges, the daily follow-up digest.
    MAILBOX_TOPIC_ADDED = "mailbox-topic-added"
    MAILBOX_TOPIC_REMOVED = "mailbox-topic-removed"
    CALL_LOGGED = "call-logged"
    CALLBACK_ATTEMPTED = "callback-attempted"
    FOLLOW_UP_SET = "follow-up-set"
    FOLLOW_UP_CLEARED = "follow-up-cleared"
    FOLLOW_UP_DIGEST_SENT = "follow-up-digest-sent"
    TICKETS_LINKED = "tickets-linked"
    TICKET_MERGED = "ticket-merged"

    # Service levels (mailboxes.service_levels): a mailbox's targets changed; a deadline
    # breached and told to the mailbox's escalation contacts.
    SERVICE_LEVELS_CHANGED = "service-levels-changed"
    SLA_ESCALATED = "sla-escalated"

    # Pickup in the citizen portal (gateway.portal.pickup): an item made for a reply, each
    # opening and refused code, a lock, a download, a new code, an expiry.
    PICKUP_CREATED = "pickup-created"
    PICKUP_OPENED = "pickup-opened"
    PICKUP_CODE_REFUSED = "pickup-code-refused"
    PICKUP_LOCKED = "pickup-locked"
    PICKUP_DOWNLOADED = "pickup-downloaded"
    PICKUP_CODE_ISSUED = "pickup-code-issued"
    PICKUP_EXPIRED = "pickup-expired"
    PICKUP_ANSWERED = "pickup-answered"

    # The trail itself (gateway.audit.keys, migration 0012).
    AUDIT_RESEALED = "audit-resealed"
    AUDIT_KEYS_DESTROYED = "audit-keys-destroyed"

    # Outbound pickup (gateway.delivery.portal_pickup): a recipient of an outbound message
    # given a pickup item and a notice without content instead of the message; its code
    # sent by SMS.
    DELIVERED_TO_PORTAL = "delivered-to-portal"
    PICKUP_CODE_SENT = "pickup-code-sent"

    # The admin console (admin_ui/pages/transfers, audit): a message's timeline viewed, a page
    # of the audit trail read, the chain verified from the console (its result).
    TRANSFER_TIMELINE_READ = "transfer-timeline-read"
    AUDIT_TRAIL_READ = "audit-trail-read"
    AUDIT_CHAIN_VERIFIED = "audit-chain-verified"

    # The console's consent register (admin_ui/pages/consent): a release recorded without a
    # mailbox (before migration 0023, by the CLI or the API) given to its case's mailbox.
    CONSENT_ASSIGNED = "consent-assigned"

    # The console's key pages (admin_ui/pages/keys): an own key's public part downloaded.
    OWN_KEY_EXPORTED = "own-key-exported"
