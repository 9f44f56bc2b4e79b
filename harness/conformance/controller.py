"""The xdist controller's part of a run with a results directory, from what its workers hand off
(harness.conformance.handoff) instead of importing torch: the usage error a worker met ends the
run; the registry entries that failed to load become failed checks; run.json is in place when
the session ends. Registered by harness.conformance.plugin in that controller only; its records
of broken entries and crashed checks serve every session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from harness.conformance.handoff import (
    PENDING_FILE,
    create_file,
    forget_handoff,
    hands_off,
    read_handoff,
    read_pending,
)
from harness.conformance.stash import RUN_ID, STRIKES, WRITER

BROKEN_WRITTEN = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    forget_handoff(config.getoption("results_dir"))  # a resumed run's: not this session's


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    config = node.config
    handoff = read_handoff(config.getoption("results_dir"))
    if handoff is None:
        return
    if handoff.error is not None:  # before any check is handed out
        config.pluginmanager.register(QuietExit(config.pluginmanager.get_plugin(
            "terminalreporter")))
        pytest.exit(handoff.error, returncode=pytest.ExitCode.USAGE_ERROR)
    if not config.stash.get(BROKEN_WRITTEN, False):
        config.stash[BROKEN_WRITTEN] = True
        record_broken(config, handoff.broken)


class QuietExit:
    """Keeps pytest's terminal from repeating a worker's usage error in its "!" banner: the
    command says it in one line (``seq-harness: error: ...``) once the session has ended."""

    def __init__(self, terminal) -> None:
        self.terminal = terminal

    @pytest.hookimpl(trylast=True)  # after the terminal has kept the exception to show
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if self.terminal is not None and isinstance(excinfo.value, pytest.exit.Exception):
            self.terminal._keyboardinterrupt_memo = None


def record_broken(config: pytest.Config, broken: Mapping[str, str]) -> None:
    """Entry points that failed to load are failed checks of the run, not a crash (those a
    resumed run recorded already are not written again)."""
    from harness.records import FAILED, Record, iter_records

    writer = config.stash.get(WRITER, None)
    if writer is None or not broken:
        return
    done = set()
    if config.getoption("resume"):
        done = {r.impl for r in iter_records(config.getoption("results_dir"))
                if r.suite == "registry"}
    for name, why in broken.items():
        if name not in done:
            writer.write(Record(impl=name, family="unknown", suite="registry", check="load",
                                outcome=FAILED, message=why, run_id=config.stash[RUN_ID]))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """run.json in place (described here, importing torch, only if no worker got to it: none
    started) and the pending file gone; a handoff with a usage error stays for the command
    that reports it."""
    directory = Path(config.getoption("results_dir"))
    handoff, pending = read_handoff(directory), read_pending(directory)
    if handoff is not None and handoff.error is not None:
        return
    forget_handoff(directory)
    if pending is None:
        return
    from harness.records import RUN_FILE, RunInfo

    if not (directory / RUN_FILE).is_file():
        run_id, argv = pending
        info = RunInfo.collect(run_id=run_id, argv=argv, threads=config.getoption("threads"))
        create_file(directory / RUN_FILE, info.to_json() + "\n")
    (directory / PENDING_FILE).unlink(missing_ok=True)


def record_crash(config: pytest.Config, crashitem: str,
                 specs: Callable[[], Sequence[object]]) -> None:
    """The record of a check whose worker process died (unless the watchdog already recorded
    it as a timeout), its family and origin as the workers resolved them (``specs``: this
    process's selection, where it resolved one)."""
    writer = config.stash.get(WRITER, None)
    if writer is None:
        return
    from harness.conformance.recording import crash_record, impl_of_nodeid
    from harness.records import iter_records

    if any(r.nodeid == crashitem for r in iter_records(config.getoption("results_dir"))):
        return
    config.stash[STRIKES].add(impl_of_nodeid(crashitem), "crash")
    if hands_off(config):
        entries = getattr(read_handoff(config.getoption("results_dir")), "entries", {})
    else:
        entries = {s.name: s for s in specs()}
    writer.write(crash_record(crashitem, families={n: e.family for n, e in entries.items()},
                              origins={n: e.origin for n, e in entries.items()},
                              run_id=config.stash[RUN_ID]))
