"""The shared mailboxes a staff user works in, and each one's ticket list."""
