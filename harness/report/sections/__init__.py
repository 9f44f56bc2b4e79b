"""The report's sections, in the order they appear: each a module with
``render(frame, output) -> list[str]`` (markdown lines; ``output`` is where the report is written,
or None, and plots go beside it). Adding a section is one module and one line here."""

from harness.report.sections import (
    accuracy,
    adding,
    against_gru,
    conformance,
    deployment,
    failures,
    latency,
    recall,
    stability,
    tolerances,
    verdict,
)

SECTIONS = (verdict, conformance, accuracy, tolerances, deployment, stability, adding, recall,
            latency, against_gru, failures)
