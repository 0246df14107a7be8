"""A ticket's page (its messages, replies, notes and history), its forms (reply, note,
assignment, state) and its attachments' downloads."""
