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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cases(grid): the Case grid of a suite test, a list or a function of the family"
    )
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
    keep, drop = [], []
    for item in items:
        is_suite = "subject" in getattr(item, "fixturenames", ())
        chosen = not is_suite or suite_name(item.module.__name__) in wanted
        (keep if chosen else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def subject(spec, case):
    """The implementation under test paired with its family's torch reference for this case."""
    from harness.subject import Subject

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
        return (yield)
    except NotSupported as error:
        pytest.skip(f"not supported: {error}")


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
    from harness.records import FAILED, NOT_SUPPORTED, PASSED, SKIPPED, Record
    from harness.registry import one_line
    from harness.selection import suite_name

    spec, case = item.callspec.params["spec"], item.callspec.params["case"]
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
        if isinstance(error, CheckFailed):
            message = str(error)
        elif error is not None:
            where = "setting up the check" if report.when == "setup" else "the check"
            message = f"raised during {where}: {one_line(error)}"
        else:
            message = str(report.longrepr).splitlines()[-1]
    tol = getattr(measured, "tolerance_used", None)
    return Record(
        impl=spec.name,
        family=spec.family,
        suite=suite_name(item.module.__name__),
        check=item.originalname.removeprefix("test_"),
        outcome=outcome,
        case_id=case.id,
        case=case.to_dict(),
        max_error=getattr(measured, "max_error", None),
        tolerance=None if tol is None else tol.atol,
        rtol=None if tol is None else tol.rtol,
        duration_s=report.duration,
        message=None if message is None else message[:2000],
        nodeid=item.nodeid,
        origin=spec.origin,
        metrics=recorded_metrics(measured),
        run_id=run_id,
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Entry points that failed to load are failed checks of the run, not a crash."""
    config = session.config
    writer = config.stash.get(WRITER, None)
    if writer is None or hasattr(config, "workerinput"):
        return
    from harness.records import FAILED, Record

    for name, why in selection(config).broken.items():
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
