"""``history page``: the history as one self-contained HTML file, to open from disk or publish as
it is (no server, nothing fetched): the summary line, the regressions and the checks that
started failing with their commit ranges, and per machine the latency charts, the check
outcomes over commits and the drift against the anchor, drawn by plotly.js embedded in the file
(MIT licence, noted in the footer).

Rendering only: the numbers come from harness.history.page_data, the plot specs from
harness.history.page_figures. Every string from the database is HTML-escaped where it is
written; the figures travel as JSON in a script element with <, > and & as \\u escapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from importlib import resources
from itertools import groupby
from pathlib import Path
from string import Formatter
from urllib.parse import quote, urlsplit

from harness.history.database import HistoryError
from harness.history.judge import Breakage, SeriesChange
from harness.history.page_data import LatencyChart, MachinePage, PageData
from harness.history.page_figures import (
    BAND,
    CHANGE_COLOURS,
    CONFIG,
    DRIFT_COLOURS,
    MEDIAN,
    OUTCOME_COLOURS,
    QUIET_CHANGE,
    checks_figure,
    drift_figure,
    latency_figure,
)
from harness.history.timelines import RunRef

PLOTLY_LICENCE = "https://github.com/plotly/plotly.js/blob/master/LICENSE"
Link = Callable[[RunRef], str]


def commit_links(template: str | None) -> Link:
    """How a run's commit is written: a link built from ``--commit-url`` (its ``{commit}``
    replaced by the full commit), or plain text; ValueError naming a bad template."""
    if template is not None:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
        scheme = urlsplit(template).scheme
        if fields != {"commit"} or scheme not in ("http", "https"):
            raise ValueError(f"--commit-url {template!r} is invalid; expected an http(s) URL "
                             "with {commit} and no other {field}, e.g. "
                             "https://github.com/OWNER/REPO/commit/{commit}")

    def link(ref: RunRef) -> str:
        name = f'<span class="commit">{escape(ref.name)}</span>'
        if template is None or not ref.commit:
            return name
        href = template.replace("{commit}", quote(ref.commit, safe=""))
        return f'<a href="{escape(href)}" title="{escape(ref.commit)}">{name}</a>'

    return link


def plotly_js() -> tuple[str, str]:
    """plotly.js (minified) and its version, from the plotly package's offline bundle."""
    try:
        from plotly.offline import get_plotlyjs, get_plotlyjs_version
    except ModuleNotFoundError:
        raise HistoryError("history page needs the plotly package (its plotly.js is embedded "
                           "in the page): pip install plotly") from None
    return get_plotlyjs().replace("</script", "<\\/script"), get_plotlyjs_version()


def asset(name: str) -> str:
    return resources.files("harness.history").joinpath(name).read_text(encoding="utf-8")


def script_json(value: object) -> str:
    """JSON that is safe inside <script>: no <, > or & left as such."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(data: PageData, *, commit_url: str | None = None,
           title: str = "seq-harness history") -> str:
    """The whole page."""
    link = commit_links(commit_url)
    js, version = plotly_js()
    figures = {"config": CONFIG, "machines": {
        m.key: [latency_figure(c, m.commits) for c in m.charts]
        + [f for f in [checks_figure(m)] if f is not None]
        + [drift_figure(c) for c in data.drift_of(m.key)] for m in data.machines}}
    options = "".join(f'<option value="{escape(m.key)}">{escape(m.label)}</option>'
                      for m in data.machines)
    state = "bad" if data.failed else "good"
    when = data.generated.strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{asset('page.css')}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        f'<p id="summary" class="summary {state}">{escape(data.summary())}</p>',
        f'<p class="meta">Generated {when} from {data.runs:,} runs; changes and breakages as '
        f"<code>seq-harness history check --min-effect {data.min_effect:g} --confidence "
        f"{data.confidence:g} --alpha {data.alpha:g}</code> judges them (runs from modified "
        f"checkouts left out: {data.judgement.dirty_runs:,}).</p>",
        '<pre id="errors" class="errors" hidden></pre>',
        f'<label>Machine <select id="machine">{options}</select></label></header>',
        regressions_section(data, link), breakages_section(data.judgement.breakages, link),
        other_changes_section(data, link),
        *(machine_section(m, link) for m in data.machines), drift_section(data, link),
        f'<footer>Drawn by <a href="{PLOTLY_LICENCE}">plotly.js {escape(version)}</a> '
        "(MIT licence, copyright Plotly, Inc.), embedded in this file: it opens without a "
        "network or a server. Written by <code>seq-harness history page</code>.</footer>",
        f'<script type="application/json" id="figures">{script_json(figures)}</script>',
        f"<script>{js}</script>", f"<script>{asset('page.js')}</script>", "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_page(data: PageData, out: str | Path, *, commit_url: str | None = None) -> Path:
    """Render the page into ``out`` (its directories made as needed, e.g. a site folder to
    publish); the path written."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"{str(out)!r} is a directory; expected a file path, e.g. "
                         "site/index.html")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{str(out)!r}: cannot make its directory {str(path.parent)!r} "
                         f"({error.strerror}); expected a writable file path") from None
    html = render(data, commit_url=commit_url)
    path.write_text(html, encoding="utf-8")
    return path


def table(headers: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """An HTML table; cells are HTML already (escaped by the caller); each row has a class."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{cls}">' + "".join(cells) + "</tr>" for cls, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def change_rows(changes: tuple[SeriesChange, ...], data: PageData,
                link: Link) -> list[tuple[str, list[str]]]:
    keys = {chart.timeline.series_id: m.key for m in data.machines for chart in m.charts}
    rows = []
    for c in changes:
        anchor = f"#{keys.get(c.series_id, '')}:latency-{c.series_id}"
        cells = [escape(c.machine), f'<a href="{escape(anchor)}">{escape(c.impl)}</a>',
                 escape(c.family), escape(c.case_id), escape(c.phase), str(c.threads),
                 link(c.last_good), link(c.first_bad), f"{c.change.ratio:.3f}x",
                 f"[{c.change.low:.3f}, {c.change.high:.3f}]", escape(c.verdict)]
        rows.append((c.verdict.replace(" ", "-"),
                     [f'<td class="number">{x}</td>' if i in (5, 8, 9) else f"<td>{x}</td>"
                      for i, x in enumerate(cells)]))
    return rows


def change_headers(data: PageData) -> list[str]:
    return ["machine", "implementation", "family", "shape", "phase", "threads", "last good",
            "first bad", "ratio", f"{data.confidence:.0%} interval", "verdict"]


def regressions_section(data: PageData, link: Link) -> str:
    found = data.regressions
    if not found:
        return ('<section id="regressions"><h2>Regressions</h2><p>No latency series got '
                "slower by more than the minimum effect.</p></section>")
    return ('<section id="regressions"><h2>Regressions</h2><p class="note">Each slowdown '
            "between its last good and first bad run (the range to bisect); the ratio is after "
            "over before, with its interval. A new regression is the series' latest change: it "
            "is slower now.</p>"
            + table(change_headers(data), change_rows(found, data, link)) + "</section>")


def other_changes_section(data: PageData, link: Link) -> str:
    found = data.other_changes
    if not found:
        return ""
    return (f"<details><summary>Other change points ({len(found)}): improvements, and changes "
            "below the minimum effect or not significant</summary>"
            + table(change_headers(data), change_rows(found, data, link)) + "</details>")


def breakages_section(breakages: tuple[Breakage, ...], link: Link) -> str:
    if not breakages:
        return ('<section id="breakages"><h2>Checks that started failing</h2><p>None: no '
                "check that passed before fails in its latest runs.</p></section>")
    rows = [("breakage", [f"<td>{x}</td>" for x in (
        escape(b.machine), escape(b.impl), escape(f"{b.suite}::{b.check}"), escape(b.case_id),
        link(b.last_good), link(b.first_bad))] + [f'<td class="number">{b.failing}</td>',
        f"<td>{escape((b.message or '').strip().splitlines()[0][:200] if b.message else '')}"
        "</td>"]) for b in breakages]
    return ('<section id="breakages"><h2>Checks that started failing</h2>'
            + table(["machine", "implementation", "check", "case", "last passed",
                     "first failed", "runs failing", "latest message"], rows) + "</section>")


def drift_section(data: PageData, link: Link) -> str:
    """Per machine: the latest comparison of each timing against the anchor, and a chart per
    timing and anchor over the head commits; or that none is recorded."""
    if not data.anchor_points:
        return ('<section id="drift"><h2>Drift against the anchor</h2><p class="note">Not '
                "recorded yet: the history holds no gate against an anchor (<code>seq-harness "
                "gate --base-ref ANCHOR</code>, then <code>history add</code> of its "
                "directory).</p></section>")
    parts = ['<section id="drift"><h2>Drift against the anchor</h2><p class="note">Head timed '
             "against a fixed anchor by the gate, per commit: the ratio (head over the anchor) "
             "and its interval, the marker red for a regression, orange when undecided; lines "
             "at 1 and, dashed, at 1 + the gate's minimum effect. A timing whose latest "
             f"{data.anchor_confirm} comparisons against its anchor are regressions fails "
             "<code>history check</code>.</p>"]
    for m in data.machines:
        latest, key = data.drift_latest_of(m.key), escape(m.key)
        parts.append(f'<div class="drift-machine" data-machine="{key}">')
        if not latest:
            parts.append(f'<p class="note">No gate against an anchor on {escape(m.label)}.</p>'
                         "</div>")
            continue
        found = data.anchor_findings  # an unconfirmed regression is shown as undecided
        shown = {p: "undecided" if p in found.unconfirmed else p.verdict for p in latest}
        rows = [("new-regression" if shown[p] == "regression" else shown[p].replace(" ", "-"),
                 [f"<td>{x}</td>" for x in (escape(p.impl), escape(p.case_id), escape(p.phase))]
                 + [f'<td class="number">{p.threads}</td>', f"<td>{escape(p.anchor)}</td>",
                    f"<td>{link(p.head)}</td>", f'<td class="number">{p.ratio:.3f}x</td>',
                    f'<td class="number">{escape(p.interval)}</td>',
                    f"<td>{escape(p.processes)}</td>",
                    f'<td style="color:{DRIFT_COLOURS.get(shown[p], "inherit")}">'
                    f"{escape(found.said(p, short=True))}"
                    "</td>"]) for p in latest]
        parts.append(f"<h3>On {escape(m.label)}: the latest comparison per timing</h3>"
                     + table(["implementation", "shape", "phase", "threads", "anchor", "head",
                              "ratio", "interval", "processes", "verdict"], rows)
                     + '<div class="grid">')
        for c in data.drift_of(m.key):
            p = c.first
            words = f"{p.impl} {p.phase} {p.case_id}" + (
                f" ({p.threads} threads)" if p.threads != 1 else "")
            parts.append(f'<figure id="fig-{escape(c.key)}"><figcaption>{escape(words)} '
                         f"against {escape(p.anchor)}</figcaption>"
                         f'<div class="plot" id="{escape(c.key)}"></div></figure>')
        parts.append("</div></div>")
    return "\n".join(parts) + "</section>"


def legend() -> str:
    changes = "".join(f'<span class="swatch" style="background:{colour}"></span>{escape(name)}'
                      for name, colour in [*CHANGE_COLOURS.items(),
                                           ("below the minimum effect or not significant",
                                            QUIET_CHANGE)])
    return (f'<p class="key"><span class="swatch" style="background:{MEDIAN}"></span>median of '
            "each run's processes (bar: fastest to slowest process)"
            f'<span class="swatch" style="background:{BAND}"></span>noise band (the fitted '
            "level, +-2 sigma of the run-to-run noise) &nbsp; dashed lines, change points: "
            f"{changes}</p>")


def caption(chart: LatencyChart, link: Link) -> str:
    t = chart.timeline
    words = [t.impl, t.check, t.case_id, f"{t.threads} thread{'s' if t.threads != 1 else ''}"]
    words += [w for w in (t.device, t.dtype) if w and w not in ("cpu", "float32")]
    text = escape(" · ".join(words))
    if chart.status:
        latest = [c for c in chart.changes if c.verdict == chart.status][-1]
        text += (f' <span class="verdict">{escape(chart.status)} '
                 f"{latest.change.ratio:.3f}x from {link(latest.first_bad)}</span>")
    return text


def machine_section(machine: MachinePage, link: Link) -> str:
    key = escape(machine.key)
    parts = [f'<section class="machine" data-machine="{key}" id="machine-{key}">',
             f"<h2>Latency on {escape(machine.label)}</h2>", legend()]
    if not machine.charts:
        parts.append('<p class="note">No latency series on this machine.</p>')
    for family, charts in groupby(machine.charts, key=lambda c: c.timeline.family):
        parts.append(f'<h3>{escape(family)}</h3><div class="grid">')
        parts += [f'<figure id="fig-{escape(c.key)}" class="{escape(c.status.replace(" ", "-"))}">'
                  f"<figcaption>{caption(c, link)}</figcaption>"
                  f'<div class="plot" id="{escape(c.key)}"></div></figure>' for c in charts]
        parts.append("</div>")
    failing = len(machine.check_rows)
    parts.append(f"<h2>Checks on {escape(machine.label)}</h2><p class=\"note\">"
                 f"{machine.checks:,} checks; {machine.checks - failing:,} never failed"
                 + (f", {failing:,} failed in at least one run (below, a column per commit)."
                    if failing else ".") + "</p>")
    if failing:
        keys = "".join(f'<span class="swatch" style="background:{colour}"></span>{escape(name)}'
                       for name, colour in OUTCOME_COLOURS.items())
        parts.append(f'<p class="key">{keys}</p><div class="plot" '
                     f'id="checks-{key}"></div>')
    parts.append("</section>")
    return "\n".join(parts)
