"""Service levels of a shared mailbox: business hours, deadlines, escalations, plausibility."""
