"""``python -m harness`` is the ``seq-harness`` command."""

from harness.cli import entry

raise SystemExit(entry())
