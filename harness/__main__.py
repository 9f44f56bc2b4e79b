"""``python -m harness`` is the ``seq-harness`` command."""

from harness.cli import main

raise SystemExit(main())
