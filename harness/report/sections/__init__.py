"""The report's sections, in the order they appear: each a module with
``render(frame, output) -> list[str]`` (markdown lines; ``output`` is where the report is written,
or None, and plots go beside it). Adding a section is one module and one line here."""

from harness.report.sections import (
    accuracy,
    adding,
    conformance,
    deployment,
    failures,
    latency,
    stability,
)

SECTIONS = (conformance, accuracy, deployment, stability, adding, latency, failures)
