"""The admin console's quarantine: the list, one message's transfer facts and decisions, the
four-eyes release, deleting, and the re-scan after a signature update."""
