"""`python -m crawler.simulator`: run the simulator from the command line.

See `crawler/simulator/cli.py` for the options.
"""

import sys

from crawler.simulator.cli import main

sys.exit(main())
