"""seq-harness: conformance and benchmark kit for recurrent sequence models.

The import package stays light (the pytest plugin imports it in every session); the registry,
suites, records and reports live in their own modules.
"""

__version__ = "0.1.0"
