"""Implementations with one realistic bug each, for proving that the suites catch them."""
