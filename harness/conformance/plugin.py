"""The pytest adapter: options, parametrization over implementations x cases, fixtures, records.

Loaded through the ``pytest11`` entry point, so ``pytest --pyargs harness.suites`` and
``seq-harness run`` behave the same. It stays thin: everything it does is delegated to plain
modules. Heavy imports happen once a suite test is collected: unrelated test runs pay nothing,
and the xdist controller of a run never imports torch (harness.conformance.handoff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.conformance.handoff import hands_off
from harness.conformance.stash import REFUSED, RUN_ID, SELECTION, STRIKES, WRITER

DIAGNOSERS = pytest.StashKey[dict]()  # implementation name -> its Diagnoser, per process
MAX_STRIKES = 3  # timeouts or crashes before an implementation's remaining checks fail at once
STUCK_EXIT = 75  # exit status of a worker ended by the watchdog


def cases(grid, *, full=None, kind: str = "module", work=None):
    """Decorator: the Case grid of a suite test — a list of Cases, or a function of the Family
    returning one (LSTM-only cases such as proj_size only for LSTMs); ``full``: the grid at
    ``--scale full``, when it differs; ``kind``: the subjects checked, modules or ``"op"``s;
    ``work``: (case, quick scale) -> the check's relative time within its time_limit factor."""
    return pytest.mark.cases.with_args(grid, full=full, kind=kind, work=work)


def pytest_addoption(parser: pytest.Parser) -> None:
    from harness.conformance.options import RECORDING, SELECTION, SKIP_IMPL, SUITES, add_options

    group = parser.getgroup("seq-harness", "seq-harness: RNN conformance suites")
    add_options(group.addoption, (*SELECTION, SKIP_IMPL, *SUITES))
    add_options(group.addoption, RECORDING)


MARKERS = (
    "cases(grid): the Case grid of a suite test, a list or a function of the family",
    "autograd: this check needs a backward pass (not supported for inference-only classes)",
    "time_limit(factor): this check may take factor x --check-timeout",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    from harness.conformance.isolation import Strikes

    directory = config.getoption("results_dir")
    config.stash[STRIKES] = Strikes(None if directory is None else Path(directory))
    if config.getoption("progress") > 0 and not hasattr(config, "workerinput"):
        from harness.conformance.progress_line import ProgressLine

        config.pluginmanager.register(ProgressLine(config), "seq-harness-progress")
    if not hasattr(config, "workerinput"):  # under -n, the xdist controller: it schedules
        config.pluginmanager.import_plugin("harness.conformance.scheduling")
    if hands_off(config):  # its workers resolve the implementations and report bad input
        config.pluginmanager.import_plugin("harness.conformance.controller")
    elif any(config.getoption(name) for name in ("impl", "impl_class", "family", "suite")):
        selection(config)  # bad input is a usage error before anything is collected
    from harness.conformance.override import Override

    try:
        Override(config.getoption("atol"), config.getoption("rtol"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    if directory is None:
        return
    from harness.conformance.handoff import run_id_for
    from harness.records import RecordWriter

    config.stash[RUN_ID] = run_id_for(config, describe=not hands_off(config))
    config.stash[WRITER] = RecordWriter(directory)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    writer = config.stash.get(WRITER, None)
    if writer is not None:
        writer.close()
        if hasattr(config, "workerinput"):  # all reported and closed: harness.core.exit
            from harness.core.exit import leave

            leave(0)


def selection(config: pytest.Config):
    """The implementations this session covers, resolved once (UsageError on bad input; in a
    worker of a run with a results directory, the error goes to the controller through the
    handoff, and the worker collects nothing)."""
    if SELECTION not in config.stash:
        from harness.registry import Selection, choose

        try:
            chosen = choose(
                impls=config.getoption("impl"), impl_classes=config.getoption("impl_class"),
                family=config.getoption("family"), skipped=config.getoption("skip_impl"))
            if not chosen.specs and not chosen.broken:
                raise ValueError("no implementations are installed in seq_harness.impls")
        except (ValueError, TypeError) as error:
            if not hasattr(config, "workerinput") or config.getoption("results_dir") is None:
                raise pytest.UsageError(str(error)) from None
            chosen = Selection(())
            config.stash[REFUSED] = str(error)
        config.stash[SELECTION] = chosen
    return config.stash[SELECTION]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist tells the controller it is done
def pytest_collection_finish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") and session.config.getoption("results_dir"):
        from harness.conformance.handoff import hand_off

        hand_off(session.config, session.items)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "subject" in metafunc.fixturenames:
        from harness.conformance.collection import parametrize

        parametrize(metafunc, selection(metafunc.config).specs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("subject" in getattr(i, "fixturenames", ()) for i in items):
        from harness.conformance.collection import select_items

        select_items(config, items)


@pytest.fixture
def subject(spec, case):
    """The implementation under test paired with its family's reference for this case: a
    module's Subject, or an op's OpSubject."""
    from harness.core.op_case import OpCase

    if isinstance(case, OpCase):
        from harness.core.op_subject import OpSubject

        return OpSubject(spec, case)
    from harness.core.subject import Subject

    return Subject(spec, case)


@pytest.fixture
def check(case, spec, request):
    """Measuring assertions, held to the tolerances harness.conformance.tolerance resolves;
    what they measured goes into this check's record."""
    return new_check(case, spec, request.config)


def new_check(case, spec, config: pytest.Config):
    """The Check of one implementation on one case, as the run's options say."""
    from harness.conformance.tolerance import Override, check_for

    return check_for(case, spec, Override(config.getoption("atol"), config.getoption("rtol")),
                     always_rounding=config.getoption("rounding") == "always")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    if "subject" not in pyfuncitem.fixturenames:  # not a suite test: stay out of the way
        return (yield)
    from harness.conformance.checks import CheckFailed, NotSupported

    try:
        result = yield
    except NotSupported as error:
        pytest.skip(f"not supported: {error}")
    except Exception as error:
        # torch's own module may break the CPU contract on this device: then so may this one
        from harness.conformance.as_torch import as_torch
        params, config = pyfuncitem.callspec.params, pyfuncitem.config
        said = as_torch(pyfuncitem.obj, params["spec"], params["case"], error,
                        lambda spec: new_check(params["case"], spec, config))
        if said is not None:
            pytest.skip(said)
        from harness.conformance.diagnosed import diagnosed
        sentence = diagnosed(pyfuncitem, error, config.stash.setdefault(DIAGNOSERS, {}))
        if sentence is None or type(error) is not CheckFailed:  # another's: its own message
            raise
        raise type(error)(f"{error}\ndiagnosis: {sentence}") from error
    # A check that compared nothing has not passed: it is not supported, saying what was empty.
    measured = pyfuncitem.funcargs.get("check")
    reason = getattr(measured, "vacuous_reason", None)
    if reason is not None:
        pytest.skip(f"not supported: {reason}")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Suite checks run under a time limit, and torch's global settings are put back after
    each, so no implementation can change another one's results."""
    if "subject" not in getattr(item, "fixturenames", ()):
        return (yield)
    from harness.conformance.isolation import CheckTimeout, TorchState, deadline, left_out

    config = item.config
    if (why := left_out(config.getoption("stop_at", None))) is not None:
        pytest.skip(why)
    spec = item.callspec.params["spec"]
    impl = spec.name
    strikes = config.stash[STRIKES]
    if strikes.count(impl) >= MAX_STRIKES:
        pytest.fail(f"not run: {MAX_STRIKES} earlier checks of {impl} timed out or crashed "
                    f"({strikes.describe(impl)})", pytrace=False)
    marker = item.get_closest_marker("time_limit")
    limit = config.getoption("check_timeout")
    if limit and spec.check_timeout:  # first calls that compile or export take longer
        limit = max(limit, spec.check_timeout)
    limit *= marker.args[0] if marker else 1
    in_worker = hasattr(config, "workerinput")
    on_stuck = (lambda: end_stuck_worker(item, limit)) if in_worker else None
    state = TorchState.capture()
    try:
        with deadline(limit, on_stuck=on_stuck):
            return (yield)
    except CheckTimeout:
        strikes.add(impl, "timeout")
        raise
    finally:
        state.restore()


def end_stuck_worker(item: pytest.Item, limit: float) -> None:
    """Called by the watchdog when a check is stuck where Python cannot interrupt it: record
    the timeout, then end this worker process (pytest-xdist starts a new one)."""
    import os

    from harness.conformance.recording import suite_record
    from harness.records import FAILED

    item.config.stash[STRIKES].add(item.callspec.params["spec"].name, "timeout")
    writer = item.config.stash.get(WRITER, None)
    if writer is not None:
        writer.write(suite_record(
            item, outcome=FAILED, duration_s=limit, run_id=item.config.stash[RUN_ID],
            message=f"timeout: the check ran longer than {limit:g} s and did not return to "
                    "Python; its worker process was ended",
        ))
    os._exit(STUCK_EXIT)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report, sched) -> None:
    """pytest-xdist: the worker running ``crashitem`` died. Record the check as crashed (unless
    the watchdog already recorded it as a timeout); the run goes on in a new worker."""
    from harness.conformance.controller import record_crash

    record_crash(sched.config, crashitem, lambda: selection(sched.config).specs)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A case outside an implementation's claimed contract (or one that compared nothing) is
    counted by pytest as *not supported*, and a failure torch's own module shares on this device
    as *as torch*, as the harness records them, not as skipped."""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith("not supported"):
            return "not supported", "n", "NOT SUPPORTED"
        if reason.startswith("as torch"):
            return "as torch", "t", "AS TORCH"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    writer = item.config.stash.get(WRITER, None)
    if writer is None or not hasattr(item, "callspec") or "spec" not in item.callspec.params:
        return report
    if report.when == "call" or (report.when == "setup" and not report.passed):
        from harness.conformance.recording import record_from_report

        writer.write(record_from_report(item, report, call, item.config.stash[RUN_ID]))
    return report


def pytest_sessionstart(session: pytest.Session) -> None:
    """Entry points that failed to load are failed checks of the run, not a crash."""
    config = session.config
    if not config.stash.get(WRITER, None) or hasattr(config, "workerinput") or hands_off(config):
        return  # the xdist controller: once its workers have said which (controller.py)
    from harness.conformance.controller import record_broken

    record_broken(config, selection(config).broken)
