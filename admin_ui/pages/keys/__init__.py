"""The admin console's key directory: partners' keys with their provenance and the decisions
on them, the keys that expire soon, and the office's own keys with their rollover."""
