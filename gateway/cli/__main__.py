"""``python -m gateway.cli``: the ``xgate`` command without its script (some benchmarks start
it so). ``xgate serve`` starts its parts through gateway.serve.part instead."""

import sys

from gateway.cli import main

sys.exit(main())
