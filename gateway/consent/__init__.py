"""Releases from confidentiality (Schweigepflichtentbindung): records, classification of
outbound mail, and what happens to held reports. The decision itself is the pure function in
``gateway.policy.consent``."""
