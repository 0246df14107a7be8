"""The routes that answer without a login, for machines rather than people.

They are kept here, apart, so that everything else in the app can be checked to require a
login (tests/test_admin_ui_layout.py does). Only ``wkd`` is meant for the internet: the
office's reverse proxy should forward ``/.well-known/openpgpkey/`` and nothing else. /healthz
and /metrics (``monitoring``) are for the office's own monitoring.
"""
