"""Who is asking, and what they may do: the login (password, then the TOTP second factor),
server-side sessions and API tokens (``authentication``), the route class that checks
identity and CSRF before a request's body is read (``guard``), and the rights per role
(``rights``).

Routers and pages never look at a user's roles themselves: they depend on a check from
``rights``, the one place where rights are decided.
"""
