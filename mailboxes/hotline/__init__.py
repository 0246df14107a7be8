"""The hotline beside the shared mailbox: calls logged as tickets, callbacks, follow-ups
(Wiedervorlage), links between tickets and merged duplicates, the topic catalogue."""
