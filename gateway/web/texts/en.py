"""English: chosen by the user or by the browser's Accept-Language."""

from __future__ import annotations

TEXTS: dict[str, str] = {
    # Layout.
    "app.name": "xgate",
    "layout.skip": "Skip to content",
    "layout.nav": "Main navigation",
    "layout.language": "Language",
    "layout.logged_in_as": "Logged in as {user}",
    "nav.home": "Overview",
    "action.logout": "Log out",
    "action.logout_everywhere": "Log out everywhere",
    # Login.
    "login.title": "Log in",
    "login.intro": "Log in with your user name and password.",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.refused": "Wrong user name or password.",
    "login.locked": "Too many failed attempts. Please try again in {minutes} minute(s).",
    "login.locked_short": "Too many failed attempts. Please try again later.",
    "login.expired": "Your session has expired. Please log in again.",
    "login.logged_out": "You are logged out.",
    "login.logged_out_everywhere": "You are logged out on every device.",
    "login.unavailable": "Logging in is not possible at the moment. Please contact your administrators.",
    # Second factor.
    "totp.title": "Verification code",
    "totp.intro": "Enter the six-digit code from your authenticator app.",
    "totp.code": "Code",
    "totp.submit": "Verify",
    "totp.wrong": "The code is wrong or has expired.",
    "totp.recovery_hint": "No access to the app? Enter one of your recovery codes instead.",
    # Enrolment.
    "enrol.title": "Set up a second factor",
    "enrol.intro": "Besides your password you need an authenticator app to log in. Scan the QR code with the app or enter the key by hand.",
    "enrol.qr_alt": "QR code to set up the authenticator app",
    "enrol.secret": "Key to enter by hand",
    "enrol.code": "Code from the app",
    "enrol.submit": "Finish set-up",
    "enrol.wrong": "The code does not match. Check your phone's clock and try again.",
    # Recovery codes.
    "recovery.title": "Recovery codes",
    "recovery.intro": "Keep these codes somewhere safe, e.g. printed. Each works once when you cannot use your authenticator app. They are shown only now.",
    "recovery.continue": "Continue to the overview",
    "recovery.regenerate": "Make new recovery codes",
    "recovery.left": "Unused recovery codes: {count}",
    # Start page.
    "home.title": "Overview",
    "home.greeting": "Hello, {user}.",
    "home.roles": "Your roles",
    "home.no_roles": "You hold no special roles.",
    "role.admin": "Administration",
    "role.auditor": "Auditor",
    "role.dpo": "Data-protection officer",
    "role.staff": "Staff",
    # Errors.
    "error.title": "Error {status}",
    "error.back": "To the overview",
    "error.403": "You are not allowed to see this page.",
    "error.403.csrf": "The form has expired or did not come from this application (CSRF protection). Please reload the page and try again.",
    "error.404": "There is no such page.",
    "error.405": "This request is not allowed here.",
    "error.413": "The request is too large.",
    "error.422": "The input is incomplete or invalid.",
    "error.500": "An internal error occurred. The administrators find details in the log.",
    "error.503": "The service is not available at the moment.",
}
