"""The hotline's pages: log a call, the callbacks due, the follow-ups due, the topics."""
