"""Which suite checks a session runs: every suite test parametrized over the selected
implementations x its case grid (a case outside an implementation's claimed contract marked *not
supported*), then narrowed to the chosen suites and, with --resume, to the checks not recorded
yet. The plugin's collection hooks call these."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.conformance.suites import (
    SUITES_PACKAGE,
    chosen_suites,
    needs_autograd,
    opt_in_names,
    suite_name,
    thorough_names,
)
from harness.core.precision import set_tf32
from harness.records import iter_records

if TYPE_CHECKING:  # torch stays out of the xdist controller, which costs checks by node id
    from harness.core.spec import ImplSpec

INFERENCE_ONLY = ("not supported: autograd (inference only: the implementation declares "
                  "autograd False, and this check needs a backward pass)")

# Warnings torch raises by design for cases the suites build on purpose.
EXPECTED_WARNINGS = (
    "ignore:dropout option adds dropout after all but last recurrent layer:UserWarning",
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning",
)


def only_once(case, adapted, spec: ImplSpec) -> str:
    """Why a case is not supported by an implementation that takes some arguments one way
    only (Capabilities.only): adapted, it is a case that runs anyway."""
    fixed = ", ".join(f"{k}={v}" for k, v in spec.capabilities.only
                      if getattr(case, k) != v)
    return (f"not supported: the implementation takes {fixed} only; as such this case is "
            f"{adapted.id}, which runs")


def parametrize(metafunc: pytest.Metafunc, specs: Sequence[ImplSpec]) -> None:
    """(spec, case) for every selected implementation x the test's ``cases`` grid."""
    import torch  # here, in the process that runs checks: the xdist controller never does
    marker = metafunc.definition.get_closest_marker("cases")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} needs @pytest.mark.cases(grid)")
    grid = marker.args[0]
    if metafunc.config.getoption("scale") == "full" and marker.kwargs.get("full") is not None:
        grid = marker.kwargs["full"]
    device = metafunc.config.getoption("device")
    suite = suite_name(metafunc.module.__name__)
    # A check needs a backward pass when its suite says so, or the test itself (marker).
    backward = (needs_autograd(Path(metafunc.module.__file__))
                or metafunc.definition.get_closest_marker("autograd") is not None)
    params, kind = [], marker.kwargs.get("kind", "module")
    for spec in specs:
        if spec.family_def.kind != kind:  # a module suite's test over ops, or the reverse
            continue
        cases = grid(spec.family_def) if callable(grid) else grid
        given = {spec.family_def.adapt(c.with_(device=device)).id for c in cases}
        ran = set()
        for case in cases:
            case = spec.family_def.adapt(case.with_(device=device))
            marks, why = [], None
            adapted = spec.capabilities.adapt(case)  # what it takes one value of, set
            if adapted != case:
                if adapted.id in given or adapted.id in ran:  # runs as itself, or already
                    why = only_once(case, adapted, spec)
                else:
                    case = adapted
            ran.add(case.id)
            why = why or spec.family_def.suite_applies(suite) or spec.why_not(case)
            if why is None and backward and not spec.capabilities.autograd:
                why = INFERENCE_ONLY
            if why is not None:
                marks.append(pytest.mark.skip(reason=why))
            elif device == "cuda" and not torch.cuda.is_available():
                marks.append(pytest.mark.skip(reason="CUDA is not available"))
            params.append(pytest.param(spec, case, id=f"{spec.name}:{case.id}", marks=marks))
    metafunc.parametrize(("spec", "case"), params)


def select_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the chosen suites' checks (no --suite: the quick ones, see --all-suites), minus
    those already recorded when resuming; set torch's threads; an opt-in suite under several
    workers is skipped with the reason. Longest first; under a time budget (--stop-at), the
    quick verdict's suites before the measuring ones: a budget spent leaves out measurements
    before conformance checks."""
    suite_items = [i for i in items if "subject" in getattr(i, "fixturenames", ())]
    for item in suite_items:
        for expected in EXPECTED_WARNINGS:
            item.add_marker(pytest.mark.filterwarnings(expected))
    threads = config.getoption("threads")
    if threads < 1:
        raise pytest.UsageError(f"--threads {threads} is invalid; expected 1 or more")
    import torch

    from harness.core.spec import ImplSpec

    torch.set_num_threads(threads)
    set_tf32(config.getoption("tf32"))

    opt_in = opt_in_names()
    named, skipped = config.getoption("suite"), config.getoption("skip_suite")
    try:
        # No --suite: the quick ones (--all-suites: every suite but the opt-in ones;
        # --benchmark-only: only those).
        wanted = set(chosen_suites(named or (opt_in if config.getoption("benchmark_only", False)
                                             else []), skipped,
                                   every=config.getoption("all_suites")))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    recorded = already_recorded(config)
    shard = config.getoption("shard")
    keep, drop = [], []
    for item in items:
        is_suite = "subject" in getattr(item, "fixturenames", ())
        # a test with no implementation of its kind selected has an empty parameter set
        params = getattr(getattr(item, "callspec", None), "params", {})
        empty = is_suite and not isinstance(params.get("spec"), ImplSpec)
        chosen = not is_suite or (not empty and suite_name(item.module.__name__) in wanted
                                  and record_key(item) not in recorded
                                  and (shard is None or shard.holds(*record_key(item))))
        (keep if chosen else drop).append(item)
        if chosen and is_suite and suite_name(item.module.__name__) in opt_in:
            workers = getattr(config, "workerinput", {}).get("workercount", 1)
            if workers > 1:
                item.add_marker(pytest.mark.skip(
                    reason=f"latency is never measured in parallel with other work ({workers} "
                    "workers); rerun without -n"))
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = longest_first(keep)
    if config.getoption("stop_at", None) is not None:  # a budget: the quick verdict's first
        thorough = set(thorough_names())
        items.sort(key=lambda item: "subject" in getattr(item, "fixturenames", ())
                   and suite_name(item.module.__name__) in thorough)


def expected_cost(item: pytest.Item) -> float:
    """A check's expected time, relative: its time_limit factor (the training tasks 10, the
    measuring checks at long sequences 3, everything else 1)."""
    marker = item.get_closest_marker("time_limit")
    return float(marker.args[0]) if marker and marker.args else 1.0


def cost_of_nodeid(config: pytest.Config, nodeid: str) -> float:
    """expected_cost of a check known only by its node id (the xdist controller collects
    nothing): its test function's time_limit marker, read from its suite module."""
    import importlib.util

    path, _, name = nodeid.partition("::")
    function = None
    file = config.rootpath / path
    module_name = f"{SUITES_PACKAGE}.{file.stem}"
    module = sys.modules.get(module_name)
    if module is None and file.is_file():
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
    if module is not None:
        function = getattr(module, name.split("[")[0], None)
    marks = [m for m in getattr(function, "pytestmark", []) if m.name == "time_limit"]
    return float(marks[0].args[0]) if marks and marks[0].args else 1.0


def work(item: pytest.Item) -> float:
    """A check's relative running time among those of its time_limit factor, from its case
    (the ``work`` of its ``cases`` marker; 0 where the test gives none)."""
    marker = item.get_closest_marker("cases")
    measure = marker.kwargs.get("work") if marker is not None else None
    params = getattr(getattr(item, "callspec", None), "params", {})
    if measure is None or "case" not in params:
        return 0.0
    return float(measure(params["case"], item.config.getoption("scale") == "ci"))


def longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The checks expected to take longest first, the collection's order kept otherwise (a
    stable sort, the same in every worker process): under several workers the long ones start
    at once and the short ones fill in after, so the workers finish together instead of one
    running the training tasks alone at the end. Within one time_limit factor, by their work
    (at the full scale a recall of 8 pairs takes six times an adding problem at T=50); then a
    suite's checks of one implementation on one case next to each other, and a family's
    implementations one after another, so the calls they share (Subject.first_call and
    reference_call) are still kept when the next one asks."""
    module_rank: dict[str, int] = {}
    for item in items:
        module_rank.setdefault(module_name(item), len(module_rank))

    def key(item: pytest.Item) -> tuple:
        params = getattr(getattr(item, "callspec", None), "params", {})
        spec, case = params.get("spec"), params.get("case")
        return (-expected_cost(item), -work(item), module_rank[module_name(item)],
                getattr(spec, "family", ""), getattr(spec, "name", ""), getattr(case, "id", ""))

    return sorted(items, key=key)


def module_name(item: pytest.Item) -> str:
    return getattr(getattr(item, "module", None), "__name__", "")


def already_recorded(config: pytest.Config) -> set[tuple[str, str, str, str]]:
    """With --resume, the checks the results directory already has records for, by
    (implementation, suite, check, case id): the same wherever the suites are installed."""
    directory = config.getoption("results_dir")
    if not config.getoption("resume") or directory is None:
        return set()
    return {r.key for r in iter_records(directory)}


def record_key(item: pytest.Item) -> tuple[str, str, str, str]:
    """The Record.key a suite test's record will have."""
    params = item.callspec.params
    return (params["spec"].name, suite_name(item.module.__name__),
            item.originalname.removeprefix("test_"), params["case"].id)
