"""Keys of what a pytest session keeps in ``config.stash``, shared by the plugin
(harness.conformance.plugin) and the modules it delegates to."""

from __future__ import annotations

import pytest

SELECTION = pytest.StashKey["object"]()  # harness.registry.Selection, resolved once
WRITER = pytest.StashKey["object"]()  # harness.records.RecordWriter of the results directory
RUN_ID = pytest.StashKey[str]()
STRIKES = pytest.StashKey["object"]()  # harness.conformance.isolation.Strikes
REFUSED = pytest.StashKey[str]()  # a worker's usage error, handed off to the controller
