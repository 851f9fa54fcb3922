"""A simulated CivitAI (REST API plus image CDN) on 127.0.0.1, for tests, demos and benchmarks.

Deterministic from a seed, with injectable faults; see `SimConfig`, `FaultConfig`, `SimServer`.
"""

from .catalogue import Catalogue
from .config import FaultConfig, SimConfig
from .log import LogEntry, RequestLog
from .server import SimServer
from .thread import SimThread

__all__ = ["Catalogue", "FaultConfig", "LogEntry", "RequestLog", "SimConfig", "SimServer", "SimThread"]
