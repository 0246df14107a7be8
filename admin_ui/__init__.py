"""The staff and admin web app.

``app`` composes it; ``security`` decides who is asking and what they may do; ``api`` is the
JSON API under /api/v1; ``pages`` the server-rendered pages; ``public`` the few routes that
answer without a login (the Web Key Directory, /healthz, /metrics); ``templates`` and
``static`` ship in the package.
"""
