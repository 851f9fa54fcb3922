"""A simulated CivitAI (REST API plus image CDN) on 127.0.0.1, for tests, demos and benchmarks.

Deterministic from a seed, with injectable faults; see `SimConfig`, `FaultConfig`, `SimServer`.
"""

from crawler.simulator.catalogue import Catalogue
from crawler.simulator.config import FaultConfig, SimConfig
from crawler.simulator.log import LogEntry, RequestLog
from crawler.simulator.server import SimServer
from crawler.simulator.thread import SimThread

__all__ = ["Catalogue", "FaultConfig", "LogEntry", "RequestLog", "SimConfig", "SimServer", "SimThread"]
