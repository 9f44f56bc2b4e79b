"""The progress line of a suite run: every --progress seconds, the checks done of all and an ETA.

A pytest plugin object, registered by harness.conformance.plugin in the process that sees every
report (the xdist controller, or a plain session)."""

from __future__ import annotations

import pytest


class ProgressLine:
    """Counts finished checks against those collected and prints harness.core.progress lines."""

    def __init__(self, config: pytest.Config) -> None:
        self.config, self.progress, self.session = config, None, None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        if self.progress is None:
            from harness.core.progress import Progress

            total = getattr(self.session, "testscollected", 0) or 1
            terminal = self.config.pluginmanager.get_plugin("terminalreporter")
            emit = terminal.write_line if terminal else print
            self.progress = Progress(total, "checks", every_s=self.config.getoption("progress"),
                                     emit=lambda line: emit("\n" + line))
        self.progress.step()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
