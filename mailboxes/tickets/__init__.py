"""Tickets in shared mailboxes: numbers, threading, states, notes, history, replies."""
