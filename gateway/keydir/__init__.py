"""The key and certificate directory.

- ``partners``: partner organisations, their domains and addresses, their policies.
- ``keys``: partners' certificates and OpenPGP keys with their provenance; import, harvest,
  approval, and the lookups the pipeline makes. ``material`` reads and checks what comes in,
  ``strength`` holds the minima of BSI TR-02102-1.
- ``own_keys`` and ``own_openpgp``: the office's own keys, sealed with the master key.
- ``expiry``: which keys expire soon. ``views``: plain-data views for the CLI and the API.

Nothing is imported here, so that loading the tables (``models``) for the migrations does not
pull in the crypto code.
"""
