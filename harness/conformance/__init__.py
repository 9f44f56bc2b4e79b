"""Conformance: the checks suites make, their case grids, the pytest plugin that runs the suites
over the registry, isolation of untrusted implementations, and the science of the gradient,
stability and training-task suites."""
