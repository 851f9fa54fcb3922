"""`python -m bench [--quick] ...`: the same as `python bench/bench.py`."""

import sys

from bench.run import main

sys.exit(main())
