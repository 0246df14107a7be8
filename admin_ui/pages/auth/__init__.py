"""The login pages: password, second factor, its enrolment and recovery codes, logout, and
the language switch."""
