"""The citizen portal: a separate internet-facing FastAPI app (gateway.portal.app) with its own
routes, templates, static files and texts (catalogue keys ``portal.*``). It can submit into the
queue and read pickup items, nothing else: no staff session, no staff route."""
