"""Server-rendered pages for staff and admins, one subpackage per area: mailboxes, tickets,
hotline, transfers, quarantine, consent, keys, users, figures.

A page handler reads the request, checks the right it needs (admin_ui.security.rights),
calls one library function and renders a template that extends ``layout.html``
(admin_ui/templates) through ``render.Renderer``. Rules live in the library packages, not
here. So far: ``auth`` (login, second factor, logout) and ``home`` (the start page).
"""
