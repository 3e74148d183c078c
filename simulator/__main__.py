"""``python -m simulator``: run ``simulate`` in manual mode (or ``cluster``) without the agent."""

import sys

from simulator.cli import main

sys.exit(main())
