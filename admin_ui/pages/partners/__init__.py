"""The admin console's partners: their domains and addresses, their policies, and the dry run
of ``xgate policy explain``."""
