"""The start page ("Übersicht"): who is logged in and their roles; the mailbox list joins it."""
