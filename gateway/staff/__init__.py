"""Staff users: accounts, passwords and sender addresses (``users``) and the audited actions
on them that the CLI and the web app share (``actions``)."""
