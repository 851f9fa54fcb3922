"""civitai-mirror: a polite, resumable asyncio mirror of CivitAI images and their generation metadata."""

__version__ = "0.1.0"
