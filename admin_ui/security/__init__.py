"""Who is asking, and what they may do: authentication (today HTTP Basic over TLS; later the
login form, second factor and sessions), CSRF protection, and the rights per role.

Routers and pages never look at a user's flags themselves: they depend on a check from
``rights``, the one place where rights are decided.
"""
