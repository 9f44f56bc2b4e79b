"""``seq-harness history add|list|check|page``: results directories into a history database, what
it holds, its judgement over commits (exit 1 on a new regression, a check that started failing or
a cumulative regression against the anchor; harness.history says how it decides), and that
judgement as a self-contained HTML page."""

from __future__ import annotations

import argparse
import os

from tabulate import tabulate

from harness.cli.common import CHECK_FAILED, UsageError, usage_errors

DB_HELP = ("database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, or a path to an "
           "SQLite file (default: $SEQ_HARNESS_DB, else seq-harness-history.sqlite here)")


def add_parser(commands) -> None:
    history = commands.add_parser("history", help="results across commits and machines")
    actions = history.add_subparsers(dest="action", metavar="ACTION",
                                     parser_class=type(history))
    actions.required = True
    add = actions.add_parser("add", help="add results directories to the history database")
    add.add_argument("dirs", nargs="+", metavar="DIR",
                     help="results directories (run, bench, gate, job; every run.json below)")
    add.add_argument("--machine", metavar="NAME",
                     help="name the machine (tells apart two machines of identical hardware)")
    add.add_argument("--branch", metavar="NAME",
                     help="the branch the runs are on (default: the checkout's, when the "
                          "commit is on it)")
    listing = actions.add_parser("list", help="what the history database holds, per machine")
    check = actions.add_parser("check", help="change points, checks that started failing and "
                                             "drift against the anchor; exit 1 on a new "
                                             "regression")
    page = actions.add_parser("page", help="the history as one self-contained HTML file: "
                                           "latency over commits, regressions, checks")
    page.add_argument("out", metavar="OUT.html", help="the HTML file to write")
    page.add_argument("--commit-url", metavar="TEMPLATE",
                      help="link commits: a URL with {commit}, e.g. "
                           "https://github.com/OWNER/REPO/commit/{commit}")
    for parser in (check, page):
        parser.add_argument("--min-effect", type=float, default=0.03, metavar="FRACTION",
                            help="smallest slowdown that fails the check (default 0.03: 3%%)")
        parser.add_argument("--confidence", type=float, default=0.95, metavar="LEVEL",
                            help="level of the ratios' intervals (default 0.95)")
        # the default is harness.history.judge.ALPHA (not imported here: SQLAlchemy is heavy)
        parser.add_argument("--alpha", type=float, default=1e-5, metavar="P",
                            help="significance of the rank test that makes a series' latest "
                            "slowdown a new regression, each time it is judged (default 1e-5: "
                            "calibrated on measured noise, see docs/history.md)")
        # the default is harness.history.anchors.CONFIRM
        parser.add_argument("--anchor-confirm", type=int, default=2, metavar="N",
                            help="gates against the anchor in a row that must say regression "
                            "before a cumulative regression fails (default 2: one gate's rare "
                            "false alarm warns, see docs/history.md)")
    for parser in (add, listing, check, page):
        parser.add_argument("--db", metavar="URL", help=DB_HELP)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.history import HistoryError, open_database
    from harness.records import ResultsError

    if args.action in ("check", "page"):
        confidence(args)  # bad settings are refused before the database is opened
    with usage_errors(HistoryError, ResultsError, ValueError):
        engine = open_database(args.db, create=args.action == "add")
        try:
            return {"add": add, "list": show, "check": check,
                    "page": page}[args.action](engine, args)
        finally:
            engine.dispose()


def add(engine, args: argparse.Namespace) -> int:
    from harness.history import add_directories

    if args.machine is not None and not args.machine.strip():
        raise UsageError("--machine '' is invalid; expected a name, e.g. ci-runner-1")
    added = add_directories(engine, args.dirs, machine=args.machine, branch=args.branch)
    for warning in added.warnings:
        print(f"seq-harness history: {warning}")
    print(f"seq-harness history: {added.line()}")
    return 0


def show(engine, args: argparse.Namespace) -> int:
    from harness.history import holdings

    held = holdings(engine)
    rows = [[h.label, f"{h.runs:,}", f"{h.latency_series:,}", f"{h.check_series:,}",
             f"{h.points:,}",
             f"{h.outcomes:,}", h.first, h.last] for h in held]
    print(tabulate(rows, headers=["machine", "runs", "latency series", "check series", "points",
                                  "check outcomes", "first run", "last run"]))
    print(f"seq-harness history: {len(held)} machines, {sum(h.runs for h in held):,} runs, "
          f"{sum(h.latency_series for h in held):,} latency series, "
          f"{sum(h.check_series for h in held):,} check series")
    return 0


def confidence(args: argparse.Namespace) -> float:
    """--confidence, once --alpha is known to be valid too."""
    if not 0.0 < args.confidence < 1.0:
        raise UsageError(f"--confidence {args.confidence:g} is invalid; expected 0 < it < 1")
    if not 0.0 < args.alpha < 1.0:
        raise UsageError(f"--alpha {args.alpha:g} is invalid; expected 0 < it < 1, e.g. 1e-5")
    if args.anchor_confirm < 1:
        raise UsageError(f"--anchor-confirm {args.anchor_confirm} is invalid; expected 1 or "
                         "more gates in a row, e.g. 2")
    return args.confidence


def page(engine, args: argparse.Namespace) -> int:
    from harness.history.page import commit_links, write_page
    from harness.history.page_data import gather

    commit_links(args.commit_url)  # a bad template is refused before any work
    data = gather(engine, min_effect=args.min_effect, confidence=confidence(args),
                  alpha=args.alpha, anchor_confirm=args.anchor_confirm)
    path = write_page(data, args.out, commit_url=args.commit_url)
    charts, machines = sum(len(m.charts) for m in data.machines), len(data.machines)
    print(f"seq-harness history: wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {charts:,} "
          f"latency {'chart' if charts == 1 else 'charts'} on {machines:,} "
          f"{'machine' if machines == 1 else 'machines'}); {data.summary()}")
    return 0


def check(engine, args: argparse.Namespace) -> int:
    """Judge every series; print the tables and one line (and append them, as markdown, to
    $GITHUB_STEP_SUMMARY when it is set: the job's page in GitHub Actions)."""
    from harness.history import judge
    from harness.history.anchors import anchor_findings

    confidence(args)
    judgement = judge(engine, min_effect=args.min_effect, confidence=args.confidence,
                      alpha=args.alpha)
    drift = anchor_findings(engine, confirm=args.anchor_confirm)
    tables = []
    if judgement.changes:
        tables.append(([[c.machine, c.impl, c.case_id, c.phase, c.threads, c.last_good.name,
                         c.first_bad.name, f"{c.change.ratio:.3f}x",
                         f"[{c.change.low:.3f}, {c.change.high:.3f}]",
                         c.verdict + (f" (drift of {c.spans} changes)" if c.spans > 1 else "")]
                        for c in judgement.changes],
                       ["machine", "implementation", "shape", "phase", "threads", "last good",
                        "first bad", "ratio", f"{args.confidence:.0%} interval", "verdict"]))
    if judgement.breakages:
        tables.append(([[b.machine, b.impl, f"{b.suite}::{b.check}", b.case_id,
                         b.last_good.name, b.first_bad.name, b.failing,
                         (b.message or "").splitlines()[0][:80] if b.message else ""]
                        for b in judgement.breakages],
                       ["machine", "implementation", "check", "case", "last passed",
                        "first failed", "runs failing", "message"]))
    for rows, headers in tables:
        print(tabulate(rows, headers=headers))
    news, broken = len(judgement.new_regressions), len(judgement.breakages)
    counts = (f"{judgement.latency_series:,} latency series ({judgement.too_short:,} with too "
              f"few runs to judge), {judgement.check_series:,} check series")
    if judgement.dirty_runs:
        counts += f"; {judgement.dirty_runs} runs from modified checkouts left out"
    if judgement.anchor_base_runs:
        counts += (f"; {judgement.anchor_base_runs} runs of the anchor in its comparisons "
                   "only")
    verdicts = (f"{news} new {'regression' if news == 1 else 'regressions'}" if news
                else "no new regression")
    verdicts += (f", {broken} {'check' if broken == 1 else 'checks'} started failing"
                 if broken else ", no check started failing")
    drifted = drift.lines()  # the anchor's regressions (they fail), unconfirmed ones and
    # undecided ones (they warn)
    for line in drifted:
        print(line)
    if drift.latest:
        verdicts += f"; {drift.phrase()}"
    print(f"seq-harness history: {verdicts} ({counts})")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as out:
            out.write("\n\n".join([f"### seq-harness history: {verdicts}", f"{counts}.",
                                   *(tabulate(rows, headers=headers, tablefmt="github")
                                     for rows, headers in tables),
                                   *(["\n".join(f"- {x}" for x in drifted)] if drifted
                                     else [])]) + "\n\n")
    return CHECK_FAILED if judgement.failed or drift.failed else 0
