"""Shared fixtures of the library's own tests, and what makes them repeatable.

Every test starts from the same random state (torch, numpy and random seeded before it runs), so
a test's data never depends on which tests ran before it in the same process — under pytest-xdist
that order differs from run to run. Hypothesis runs the ``ci`` profile unless
HYPOTHESIS_PROFILE names another: derandomized (the same examples on every run of the same
commit) and without an example database (nothing carried between runs). ``tox -e explore`` runs
the ``explore`` profile: fresh random examples, many more of them.
"""

import os
import random

import numpy as np
import pytest

# torch must be imported before any pytester test snapshots sys.modules: pytester removes the
# modules a test imported when it ends, and a torch garbage-collected after its modules were
# removed crashes the interpreter.
import torch
from hypothesis import settings

pytest_plugins = ["pytester"]

settings.register_profile("ci", derandomize=True, database=None, max_examples=200,
                          deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def same_random_state_for_every_test():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
