"""Pickup: replies to citizens without a key, kept sealed for them to read in the portal.

An item is opened with a long random link token (from the notice mail) plus a short code
that reaches the citizen on a second channel; neither is stored in clear.
"""
