"""The pytest adapter: options, parametrization over implementations x cases, fixtures, records.

Loaded through the ``pytest11`` entry point, so ``pytest --pyargs harness.suites`` and
``seq-harness run`` behave the same. It stays thin: everything it does is delegated to plain
modules (selection, subject, checks, records, report). Heavy imports happen only once a suite test
is collected, so the plugin costs nothing to unrelated test runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

SELECTION = pytest.StashKey["object"]()
WRITER = pytest.StashKey["object"]()
RUN_ID = pytest.StashKey[str]()
STRIKES = pytest.StashKey["object"]()
MAX_STRIKES = 3  # after this many timeouts or crashes, an implementation's remaining checks
# fail at once (a hanging or crashing implementation must not hold the run for hours)
STUCK_EXIT = 75  # exit status of a worker ended by the watchdog


def cases(grid, *, full=None):
    """Decorator: the Case grid of a suite test — a list of Cases, or a function of the Family
    returning one (so LSTM-only cases such as proj_size appear only for LSTMs). ``full`` is the
    grid at ``--scale full`` (the heavy variants of the main run), when it differs."""
    return pytest.mark.cases.with_args(grid, full=full)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seq-harness", "seq-harness: RNN conformance suites")
    group.addoption("--impl", action="append", default=[], metavar="NAME",
                    help="registry entry to run (repeatable; default: the whole registry)")
    group.addoption("--impl-class", action="append", default=[], metavar="MODULE:CLASS",
                    help="an nn.Module class with torch's RNN/LSTM/GRU contract (with --family)")
    group.addoption("--family", default=None, metavar="FAMILY",
                    help="family of --impl-class: rnn_tanh, rnn_relu, lstm or gru")
    group.addoption("--suite", action="append", default=[], metavar="NAME",
                    help="run only this suite (repeatable), e.g. padding")
    group.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                    help="device the implementations run on (the reference stays on the CPU)")
    group.addoption("--scale", default="ci", choices=("ci", "full"),
                    help="ci: the quick grids; full: also the heavy variants (e.g. adding at "
                    "T=100, 200)")
    group.addoption("--threads", type=int, default=1, metavar="N",
                    help="torch threads while suites run (default 1: on shared machines two "
                    "threads per process gave rare 700x outliers)")
    group.addoption("--results-dir", default=None, metavar="DIR",
                    help="write a record per check to DIR/records.jsonl and DIR/report.md")
    group.addoption("--resume", action="store_true",
                    help="with --results-dir: skip the checks already recorded there and append "
                    "the rest")
    group.addoption("--check-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="time limit of one check (default 120; 0: none); a check past it fails "
                    "as a timeout and the run goes on")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cases(grid): the Case grid of a suite test, a list or a function of the family"
    )
    config.addinivalue_line(
        "markers", "time_limit(factor): this check may take factor x --check-timeout"
    )
    from harness.isolation import Strikes

    directory = config.getoption("results_dir")
    config.stash[STRIKES] = Strikes(None if directory is None else Path(directory))
    options = ("impl", "impl_class", "family", "suite")
    if any(config.getoption(name) for name in options):
        selection(config)  # bad input is a usage error before anything is collected
    directory = config.getoption("results_dir")
    if directory is None:
        return
    from harness.records import RecordWriter, RunInfo, read_run_info, write_run_info

    run_file = Path(directory) / "run.json"
    if run_file.is_file():  # written by `seq-harness run`, or by the xdist controller
        config.stash[RUN_ID] = read_run_info(directory).run_id
    else:
        info = RunInfo.collect(argv=["pytest", *config.invocation_params.args])
        write_run_info(directory, info)
        config.stash[RUN_ID] = info.run_id
    config.stash[WRITER] = RecordWriter(directory)


def pytest_unconfigure(config: pytest.Config) -> None:
    writer = config.stash.get(WRITER, None)
    if writer is not None:
        writer.close()


def selection(config: pytest.Config):
    """The implementations this session covers, resolved once (UsageError on bad input)."""
    if SELECTION not in config.stash:
        from harness.selection import choose

        try:
            config.stash[SELECTION] = choose(
                impls=config.getoption("impl"),
                impl_classes=config.getoption("impl_class"),
                family=config.getoption("family"),
            )
        except (ValueError, TypeError) as error:
            raise pytest.UsageError(str(error)) from None
    return config.stash[SELECTION]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "subject" not in metafunc.fixturenames:
        return
    import torch

    marker = metafunc.definition.get_closest_marker("cases")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} needs @pytest.mark.cases(grid)")
    grid = marker.args[0]
    if metafunc.config.getoption("scale") == "full" and marker.kwargs.get("full") is not None:
        grid = marker.kwargs["full"]
    device = metafunc.config.getoption("device")
    params = []
    for spec in selection(metafunc.config).specs:
        cases = grid(spec.fam) if callable(grid) else grid
        for case in cases:
            case = case.with_(device=device)
            marks = []
            why = spec.why_not(case)
            if why is not None:
                marks.append(pytest.mark.skip(reason=why))
            elif device == "cuda" and not torch.cuda.is_available():
                marks.append(pytest.mark.skip(reason="CUDA is not available"))
            params.append(pytest.param(spec, case, id=f"{spec.name}:{case.id}", marks=marks))
    metafunc.parametrize(("spec", "case"), params)


# Warnings torch raises by design for cases the suites build on purpose.
EXPECTED_WARNINGS = (
    "ignore:dropout option adds dropout after all but last recurrent layer:UserWarning",
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite_items = [i for i in items if "subject" in getattr(i, "fixturenames", ())]
    if not suite_items:
        return
    import torch

    from harness.selection import OPT_IN, suite_name, suite_names

    for item in suite_items:
        for expected in EXPECTED_WARNINGS:
            item.add_marker(pytest.mark.filterwarnings(expected))
    threads = config.getoption("threads")
    if threads < 1:
        raise pytest.UsageError(f"--threads {threads} is invalid; expected 1 or more")
    torch.set_num_threads(threads)

    valid = suite_names()
    named = config.getoption("suite")
    for name in named:
        if name not in valid:
            raise pytest.UsageError(f"unknown suite {name!r}; valid: {', '.join(valid)}")
    # No --suite: every suite but the opt-in ones (--benchmark-only: only those).
    if named:
        wanted = set(named)
    elif config.getoption("benchmark_only", False):
        wanted = set(OPT_IN)
    else:
        wanted = set(valid) - set(OPT_IN)
    recorded = already_recorded(config)
    keep, drop = [], []
    for item in items:
        is_suite = "subject" in getattr(item, "fixturenames", ())
        chosen = not is_suite or (suite_name(item.module.__name__) in wanted
                                  and record_key(item) not in recorded)
        (keep if chosen else drop).append(item)
        if chosen and is_suite and suite_name(item.module.__name__) in OPT_IN:
            workers = getattr(config, "workerinput", {}).get("workercount", 1)
            if workers > 1:
                item.add_marker(pytest.mark.skip(
                    reason=f"latency is never measured in parallel with other work ({workers} "
                    "workers); rerun without -n"))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def already_recorded(config: pytest.Config) -> set[tuple[str, str, str, str]]:
    """With --resume, the checks the results directory already has records for, by
    (implementation, suite, check, case id): the same wherever the suites are installed."""
    directory = config.getoption("results_dir")
    if not config.getoption("resume") or directory is None:
        return set()
    from harness.records import iter_records

    return {r.key for r in iter_records(directory)}


def record_key(item: pytest.Item) -> tuple[str, str, str, str]:
    """The Record.key a suite test's record will have."""
    from harness.selection import suite_name

    params = item.callspec.params
    return (params["spec"].name, suite_name(item.module.__name__),
            item.originalname.removeprefix("test_"), params["case"].id)


@pytest.fixture
def subject(spec, case):
    """The implementation under test paired with its family's torch reference for this case."""
    from harness.core.subject import Subject

    return Subject(spec, case)


@pytest.fixture
def check(case, spec):
    """Measuring assertions; what they measured goes into this check's record."""
    from harness.checks import Check, Tolerance

    return Check(Tolerance.for_case(case), reference_name=f"torch {spec.family}")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    if "subject" not in pyfuncitem.fixturenames:  # not a suite test: stay out of the way
        return (yield)
    from harness.checks import NotSupported

    try:
        result = yield
    except NotSupported as error:
        pytest.skip(f"not supported: {error}")
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
    from harness.isolation import CheckTimeout, TorchState, deadline

    config = item.config
    impl = item.callspec.params["spec"].name
    strikes = config.stash[STRIKES]
    if strikes.count(impl) >= MAX_STRIKES:
        pytest.fail(f"not run: {MAX_STRIKES} earlier checks of {impl} timed out or crashed "
                    f"({strikes.describe(impl)})", pytrace=False)
    marker = item.get_closest_marker("time_limit")
    limit = config.getoption("check_timeout") * (marker.args[0] if marker else 1)
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
    config = sched.config
    writer = config.stash.get(WRITER, None)
    if writer is None:
        return
    from harness.records import FAILED, Record, iter_records
    from harness.selection import suite_name

    directory = config.getoption("results_dir")
    if any(r.nodeid == crashitem for r in iter_records(directory)):
        return
    path, _, test = crashitem.partition("::")
    name, _, param = test.partition("[")
    impl, _, case_id = param.rstrip("]").partition(":")
    config.stash[STRIKES].add(impl, "crash")
    families = {s.name: s.family for s in selection(config).specs}
    origins = {s.name: s.origin for s in selection(config).specs}
    writer.write(Record(
        impl=impl, family=families.get(impl, "unknown"),
        suite=suite_name(Path(path).stem), check=name.removeprefix("test_"), outcome=FAILED,
        case_id=case_id, nodeid=crashitem, origin=origins.get(impl, ""),
        message="crashed: the worker process died while running this check (a fault in native "
                "code, os._exit, or out of memory)",
        run_id=config.stash[RUN_ID],
    ))


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A case outside an implementation's claimed contract (or one that compared nothing) is
    counted by pytest as *not supported*, as the harness records it, not as skipped."""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith("not supported"):
            return "not supported", "n", "NOT SUPPORTED"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    writer = item.config.stash.get(WRITER, None)
    if writer is None or not hasattr(item, "callspec") or "spec" not in item.callspec.params:
        return report
    if report.when == "call" or (report.when == "setup" and not report.passed):
        writer.write(record_from_report(item, report, call, item.config.stash[RUN_ID]))
    return report


def recorded_metrics(measured) -> dict:
    if measured is None:
        return {}
    metrics = dict(getattr(measured, "metrics", {}))
    if getattr(measured, "notes", None):
        metrics["notes"] = list(measured.notes)
    return metrics


def record_from_report(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo,
                       run_id: str):
    """The Record of one suite test, from pytest's report of it and the Check it used."""
    from harness.checks import CheckFailed
    from harness.core.text import one_line
    from harness.isolation import CheckTimeout
    from harness.records import FAILED, NOT_SUPPORTED, PASSED, SKIPPED

    measured = item.funcargs.get("check") if hasattr(item, "funcargs") else None
    message = None
    if report.passed:
        outcome = PASSED
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        message = reason.removeprefix("Skipped: ")
        outcome = NOT_SUPPORTED if message.startswith("not supported") else SKIPPED
    else:
        outcome = FAILED
        error = call.excinfo.value if call.excinfo is not None else None
        if isinstance(error, (CheckFailed, CheckTimeout, pytest.fail.Exception)):
            message = str(error)
        elif error is not None:
            where = "setting up the check" if report.when == "setup" else "the check"
            message = f"raised during {where}: {one_line(error)}"
        else:
            message = str(report.longrepr).splitlines()[-1]
    tol = getattr(measured, "tolerance_used", None)
    return suite_record(
        item, outcome=outcome, message=message, duration_s=report.duration, run_id=run_id,
        max_error=getattr(measured, "max_error", None),
        tolerance=None if tol is None else tol.atol,
        rtol=None if tol is None else tol.rtol,
        compared=getattr(measured, "compared", None),
        metrics=recorded_metrics(measured),
    )


def suite_record(item: pytest.Item, *, outcome: str, message: str | None, duration_s: float,
                 run_id: str, **measured):
    """A Record naming the suite test ``item`` (implementation, suite, check, case)."""
    from harness.records import Record
    from harness.selection import suite_name

    spec, case = item.callspec.params["spec"], item.callspec.params["case"]
    return Record(
        impl=spec.name,
        family=spec.family,
        suite=suite_name(item.module.__name__),
        check=item.originalname.removeprefix("test_"),
        outcome=outcome,
        case_id=case.id,
        case=case.to_dict(),
        duration_s=duration_s,
        message=None if message is None else message[:2000],
        nodeid=item.nodeid,
        origin=spec.origin,
        run_id=run_id,
        **measured,
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Entry points that failed to load are failed checks of the run, not a crash."""
    config = session.config
    writer = config.stash.get(WRITER, None)
    if writer is None or hasattr(config, "workerinput"):
        return
    from harness.records import FAILED, Record, iter_records

    done = set()
    if config.getoption("resume"):
        done = {r.impl for r in iter_records(config.getoption("results_dir"))
                if r.suite == "registry"}
    for name, why in selection(config).broken.items():
        if name in done:
            continue
        writer.write(Record(impl=name, family="unknown", suite="registry", check="load",
                            outcome=FAILED, message=why, run_id=config.stash[RUN_ID]))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    directory = config.getoption("results_dir")
    if directory is None or hasattr(config, "workerinput"):
        return
    from harness.report import write_report

    try:
        write_report([directory], Path(directory) / "report.md")
    except Exception as error:  # the records are on disk; a report failure must not hide them
        warnings.warn(f"seq-harness: could not write the report for {directory}: {error}",
                      stacklevel=1)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    directory = config.getoption("results_dir")
    if directory is not None and not hasattr(config, "workerinput"):
        terminalreporter.write_line(
            f"seq-harness: records in {Path(directory) / 'records.jsonl'}, "
            f"report in {Path(directory) / 'report.md'}"
        )
