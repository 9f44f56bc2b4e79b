"""Shared fixtures of the library's own tests."""

# torch must be imported before any pytester test snapshots sys.modules: pytester removes the
# modules a test imported when it ends, and a torch garbage-collected after its modules were
# removed crashes the interpreter.
import torch  # noqa: F401

pytest_plugins = ["pytester"]
