"""The benchmark package; `bench/bench.py` (or `python -m bench`) runs it. See bench/bench.py."""
