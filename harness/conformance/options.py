"""The options ``pytest --pyargs harness.suites`` and ``seq-harness`` share, declared once.

pytest's ``addoption`` and argparse's ``add_argument`` take the same keywords, so each option is
written here once and added to both: a flag, its default or its help text cannot drift apart
between the two ways of running the suites.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from harness.core.shard import shard_option


@dataclass(frozen=True)
class Option:
    flag: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))


def option(flag: str, **settings: Any) -> Option:
    return Option(flag, settings)


# Which implementations (run, bench, profile and pytest).
IMPL = option("--impl", action="append", default=[], metavar="NAME",
              help="registry entry to run (repeatable; default: the whole registry)")
IMPL_CLASS = option("--impl-class", action="append", default=[], metavar="MODULE:CLASS",
                    help="your nn.Module class with torch's RNN/LSTM/GRU contract (repeatable)")
IMPL_FN = option("--impl-fn", action="append", dest="impl_class", default=[],
                 metavar="MODULE:FUNCTION",
                 help="your op with fla's signature, for a matrix-state family (scalar_decay, "
                 "gated_delta, mlstm; repeatable; the same list as --impl-class)")
FAMILY = option("--family", default=None, metavar="FAMILY",
                help="family of the --impl-class classes or --impl-fn ops: rnn_tanh, lstm, gru, "
                "gated_delta, ... (optional for one that declares harness_family)")
SELECTION = (IMPL, IMPL_CLASS, IMPL_FN, FAMILY)
SKIP_IMPL = option("--skip-impl", action="append", default=[], metavar="NAME",
                   help="leave this registry entry out (repeatable): the whole registry but "
                   "these")

# How the suites run (run and pytest).
SUITE = option("--suite", action="append", default=[], metavar="NAME",
               help="run only this suite (repeatable), e.g. padding; default: the quick "
               "verdict's suites (every suite but the measuring and opt-in ones)")
ALL_SUITES = option("--all-suites", action="store_true",
                    help="with no --suite: every suite but the opt-in ones, the measuring ones "
                    "included (accuracy, stability, the training tasks adding and recall: "
                    "seconds per implementation, what `seq-harness job` runs); default: the "
                    "quick verdict's suites")
SKIP_SUITE = option("--skip-suite", action="append", default=[], metavar="NAME",
                    help="leave this suite out (repeatable), e.g. numerics")
DEVICE = option("--device", default="cpu", choices=("cpu", "cuda"),
                help="device the implementations run on (the reference stays on the CPU)")
SCALE = option("--scale", default="ci", choices=("ci", "full"),
               help="ci: the quick grids (default); full: also the heavy variants (e.g. adding "
               "at T=100, 200)")
THREADS = option("--threads", type=int, default=1, metavar="N",
                 help="torch threads (default 1: on shared machines two threads per process "
                 "gave rare 700x outliers); recorded in run.json")
TF32 = option("--tf32", default="off", choices=("off", "on"),
              help="TF32 products on CUDA (cuDNN and matmul; default off: IEEE float32, what "
              "the float32 tolerances assume; on: torch's cuDNN default); recorded in run.json")
CHECK_TIMEOUT = option("--check-timeout", type=float, default=120.0, metavar="SECONDS",
                       help="time limit of one check (default 120; 0: none); a check past it "
                       "fails as a timeout and the run goes on")
ATOL = option("--atol", type=float, default=None, metavar="A",
              help="hold every value check to this absolute tolerance instead of the "
              "declared or family one (a one-off run; exact checks are never loosened)")
RTOL = option("--rtol", type=float, default=None, metavar="R",
              help="relative tolerance next to --atol (default 0)")
ROUNDING = option("--rounding", default="needed", choices=("needed", "always"),
                  help="when a value check measures the case's rounding (the reference in "
                  "float32 against float64): needed (default), only where the family's atol is "
                  "exceeded; always, on every comparison (for the tolerance tables)")
NO_DIAGNOSIS = option("--no-diagnosis", action="store_true",
                      help="do not diagnose failed value checks (by default each is shrunk to "
                      "its smallest failing case and matched against the family's known bug "
                      "patterns, harness.diagnosis)")
SHARD = option("--shard", default=None, metavar="K/N",
               type=shard_option,
               help="run only shard K of N: a deterministic split of the checks (and a job's "
               "timings) by a hash of what identifies them, for N machines of a CI matrix; "
               "their results directories together hold one run's records")
SUITES = (SUITE, ALL_SUITES, SKIP_SUITE, DEVICE, SCALE, THREADS, TF32, CHECK_TIMEOUT, ATOL,
          RTOL, ROUNDING, NO_DIAGNOSIS, SHARD)


# Where a plain pytest run writes its records (`seq-harness run` passes them itself).
RECORDING = (
    option("--results-dir", default=None, metavar="DIR",
           help="write a record per check to DIR/records.jsonl and DIR/report.md"),
    option("--resume", action="store_true",
           help="with --results-dir: skip the checks already recorded there and append the "
           "rest"),
    option("--progress", type=float, default=0.0, metavar="SECONDS",
           help="every SECONDS, a line with the checks done of all and an ETA (default 0: "
           "none)"),
    option("--stop-at", type=float, default=None, metavar="EPOCH",
           help="no check starts after this wall-clock time (seconds since the epoch): the "
           "rest are recorded skipped, left out, and --resume runs them (a job's time budget)"),
    option("--no-report", action="store_true",
           help="with --results-dir: no DIR/report.md at the end (a job renders one report of "
           "all its stages)"),
)


def add_options(add: Callable[..., Any], options: Iterable[Option]) -> None:
    """Add ``options`` through ``add``: a pytest option group's ``addoption`` or an argparse
    parser's ``add_argument``."""
    for o in options:
        add(o.flag, **o.settings)
