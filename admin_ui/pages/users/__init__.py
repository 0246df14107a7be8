"""The admin console's users and roles (/console/users)."""
