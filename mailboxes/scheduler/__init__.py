"""The one scheduler of the worker process: named jobs (jobs.py), run once per due time."""
