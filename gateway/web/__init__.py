"""The web foundation shared by the staff app (admin_ui) and the later citizen portal: the
Jinja environment, the German and English text catalogue, security headers, CSRF tokens and
server-side login sessions. Nothing here knows a page: the apps bring their templates."""
