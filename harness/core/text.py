"""Text that goes where it must not break anything: markdown table cells, inline code, and
errors squeezed onto one line (a usage error, a failed check's message, a report row)."""

from __future__ import annotations


def md(text: object) -> str:
    """Text safe inside a markdown table cell: one line, pipes and backticks escaped."""
    flat = " ".join(str(text).split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("<", "&lt;")


def code(text: object) -> str:
    """Inline code that survives any content (one line, no backticks inside)."""
    return f"`{' '.join(str(text).split()).replace('`', chr(39))}`"


def one_line(error: BaseException) -> str:
    """'TypeError: message' on a single line, for reports and usage errors."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
