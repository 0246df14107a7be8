"""The SMTP edge: the inbound (partners) and submission (staff) listeners on aiosmtpd.

server      start_listeners / serve_smtp: bind the listeners on the running event loop
background  the same listeners on a loop in a background thread (tests)
protocol    aiosmtpd's SMTP with connection limit, line limit, STARTTLS buffer discard
handler     MAIL / RCPT / DATA decisions; the 250 only after the spool committed
auth        AUTH PLAIN / LOGIN against gateway.staff.users, off the event loop
content     checks on the raw DATA bytes (bare CR/LF, NUL, header block size)
addresses   envelope address syntax
trace       the Received: header
codes       every reply the edge decides, as named constants
"""
