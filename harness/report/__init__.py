"""Reports: records as a frame, the markdown document and its sections, plots, and the documents
of the gate, calibration and profiling."""

from harness.report.document import render, write_report

__all__ = ["render", "write_report"]
