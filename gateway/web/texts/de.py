"""Deutsch: die Sprache der Oberfläche, wenn nichts anderes gewählt ist."""

from __future__ import annotations

TEXTS: dict[str, str] = {
    # Layout.
    "app.name": "xgate",
    "layout.skip": "Zum Inhalt springen",
    "layout.nav": "Hauptnavigation",
    "layout.language": "Sprache",
    "layout.logged_in_as": "Angemeldet als {user}",
    "nav.home": "Übersicht",
    "action.logout": "Abmelden",
    "action.logout_everywhere": "Überall abmelden",
    # Login.
    "login.title": "Anmelden",
    "login.intro": "Melden Sie sich mit Ihrem Benutzernamen und Passwort an.",
    "login.username": "Benutzername",
    "login.password": "Passwort",
    "login.submit": "Anmelden",
    "login.refused": "Benutzername oder Passwort ist falsch.",
    "login.locked": "Zu viele Fehlversuche. Bitte versuchen Sie es in {minutes} Minute(n) erneut.",
    "login.locked_short": "Zu viele Fehlversuche. Bitte versuchen Sie es später erneut.",
    "login.expired": "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
    "login.logged_out": "Sie sind abgemeldet.",
    "login.logged_out_everywhere": "Sie sind auf allen Geräten abgemeldet.",
    "login.unavailable": "Die Anmeldung ist gerade nicht möglich. Bitte wenden Sie sich an die Administration.",
    # Second factor.
    "totp.title": "Bestätigungscode",
    "totp.intro": "Geben Sie den sechsstelligen Code aus Ihrer Authenticator-App ein.",
    "totp.code": "Code",
    "totp.submit": "Bestätigen",
    "totp.wrong": "Der Code ist falsch oder abgelaufen.",
    "totp.recovery_hint": "Kein Zugriff auf die App? Geben Sie stattdessen einen Ihrer Wiederherstellungscodes ein.",
    # Enrolment.
    "enrol.title": "Zweiten Faktor einrichten",
    "enrol.intro": "Zur Anmeldung brauchen Sie zusätzlich zum Passwort eine Authenticator-App. Scannen Sie den QR-Code mit der App oder geben Sie den Schlüssel von Hand ein.",
    "enrol.qr_alt": "QR-Code zum Einrichten der Authenticator-App",
    "enrol.secret": "Schlüssel zur Eingabe von Hand",
    "enrol.code": "Code aus der App",
    "enrol.submit": "Einrichtung abschließen",
    "enrol.wrong": "Der Code passt nicht. Prüfen Sie die Uhrzeit Ihres Telefons und versuchen Sie es erneut.",
    # Recovery codes.
    "recovery.title": "Wiederherstellungscodes",
    "recovery.intro": "Bewahren Sie diese Codes sicher auf, z. B. ausgedruckt. Jeder Code gilt einmal, wenn Sie keinen Zugriff auf Ihre Authenticator-App haben. Sie werden nur jetzt angezeigt.",
    "recovery.continue": "Weiter zur Übersicht",
    "recovery.regenerate": "Neue Wiederherstellungscodes erzeugen",
    "recovery.left": "Unbenutzte Wiederherstellungscodes: {count}",
    # Start page.
    "home.title": "Übersicht",
    "home.greeting": "Guten Tag, {user}.",
    "home.roles": "Ihre Rollen",
    "home.no_roles": "Sie haben keine besonderen Rollen.",
    "role.admin": "Administration",
    "role.auditor": "Revision",
    "role.dpo": "Datenschutzbeauftragte(r)",
    "role.staff": "Mitarbeiter(in)",
    # Errors.
    "error.title": "Fehler {status}",
    "error.back": "Zur Übersicht",
    "error.403": "Sie haben keine Berechtigung für diese Seite.",
    "error.403.csrf": "Das Formular ist abgelaufen oder stammt nicht von dieser Anwendung (CSRF-Schutz). Bitte laden Sie die Seite neu und versuchen Sie es erneut.",
    "error.404": "Diese Seite gibt es nicht.",
    "error.405": "Diese Anfrage ist hier nicht erlaubt.",
    "error.413": "Die Anfrage ist zu groß.",
    "error.422": "Die Eingabe ist unvollständig oder ungültig.",
    "error.500": "Ein interner Fehler ist aufgetreten. Die Administration findet Einzelheiten im Protokoll.",
    "error.503": "Der Dienst ist gerade nicht verfügbar.",
}
