"""The shared conformance suites, parametrized over registry entries x cases by the harness'
pytest plugin. Installed as ``harness.suites``; run with ``seq-harness run`` or
``pytest --pyargs harness.suites``."""
