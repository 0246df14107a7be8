"""Transfers for the admin console: searching every message (search) and a message's journey
read from the audit trail (timeline). Nothing here reads message content."""
