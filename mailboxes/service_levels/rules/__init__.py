"""Rules as pure functions over ticket facts and a clock: SLA status, plausibility checks."""
