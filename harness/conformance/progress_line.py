"""The progress line of a suite run: every --progress seconds, the checks done of all and an ETA.

A pytest plugin object, registered by harness.conformance.plugin in the process that sees every
report (the xdist controller, or a plain session). The checks run longest first
(harness.conformance.collection.longest_first), so the ETA weighs what is left by what checks of
each cost class took so far, not by their count; until a class has a finished check, it is
unknown.
"""

from __future__ import annotations

from collections import Counter

import pytest

from harness.conformance.collection import cost_of_nodeid, expected_cost


class ProgressLine:
    """Counts finished checks against those collected and prints harness.core.progress lines."""

    def __init__(self, config: pytest.Config) -> None:
        self.config, self.progress, self.session = config, None, None
        self.cost: dict[str, float] = {}  # nodeid -> cost class (its time_limit factor)
        self.left: Counter[float] = Counter()  # checks not finished, per cost class
        self.seconds: Counter[float] = Counter()  # time the finished ones took, per class
        self.finished: Counter[float] = Counter()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.know({item.nodeid: expected_cost(item) for item in items})

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        if not self.cost:  # every worker collects the same checks
            from harness.conformance.handoff import read_handoff

            directory = self.config.getoption("results_dir")
            handoff = read_handoff(directory) if directory is not None else None
            cost = (handoff.cost if handoff is not None  # the suite modules import torch
                    else lambda nodeid: cost_of_nodeid(self.config, nodeid))
            self.know({nodeid: cost(nodeid) for nodeid in ids})

    def know(self, cost: dict[str, float]) -> None:
        self.cost = cost
        self.left = Counter(cost.values())

    def share_left(self) -> float | None:
        """The share of the run's work still to do: per cost class, the checks left times the
        mean time a finished one took (None while a class with checks left has none done)."""
        if not self.cost:
            return None
        mean = {c: self.seconds[c] / self.finished[c] for c in self.finished if self.finished[c]}
        if any(c not in mean for c, n in self.left.items() if n):
            return None
        left = sum(n * mean[c] for c, n in self.left.items())
        done = sum(self.seconds.values())
        return left / (left + done) if left + done > 0 else None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        if self.progress is None:
            from harness.core.progress import Progress

            total = getattr(self.session, "testscollected", 0) or 1
            terminal = self.config.pluginmanager.get_plugin("terminalreporter")
            emit = terminal.write_line if terminal else print
            self.progress = Progress(total, "checks", every_s=self.config.getoption("progress"),
                                     emit=lambda line: emit("\n" + line),
                                     share_left=self.share_left if self.cost else None)
        cost = self.cost.get(report.nodeid)
        if cost is not None and self.left[cost]:
            self.left[cost] -= 1
            self.finished[cost] += 1
            self.seconds[cost] += report.duration
        self.progress.step()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
