"""``python -m gateway.cli``: how ``xgate serve`` starts its parts."""

import sys

from gateway.cli import main

sys.exit(main())
