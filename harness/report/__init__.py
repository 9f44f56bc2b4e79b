"""Reports: records as a frame, the markdown document and its sections, plots, and the documents
of the gate, calibration and profiling.

``render`` and ``write_report`` are imported on first use: the report's plugin entry point loads
this package in every pytest session (a worker process, or an unrelated project's tests), which
must not pay for pandas, matplotlib and torch unless a report is written."""

__all__ = ["render", "write_report"]


def __getattr__(name: str):
    if name in __all__:
        from harness.report import document

        return getattr(document, name)
    raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
