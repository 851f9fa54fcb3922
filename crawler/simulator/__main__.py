"""`python -m crawler.simulator`: run the simulator from the command line.

See `crawler/simulator/cli.py` for the options.
"""

import sys

from .cli import main

sys.exit(main())
