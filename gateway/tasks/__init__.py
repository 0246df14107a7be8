"""Background tasks: long operations started from a page, run in the web app's process.

See gateway.tasks.runner for how a page starts one and gateway.tasks.views for reading them.
"""
