"""The one error every export raises for what cannot be exported (the CLI prints it as one line, exit 2)."""


class ExportError(RuntimeError):
    """One readable line: what cannot be exported and why."""
