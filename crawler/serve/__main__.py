"""`python -m crawler.serve --out DIR [...]`: the same as `civitai-mirror serve`."""

import sys

from crawler.serve.command import main

sys.exit(main())
