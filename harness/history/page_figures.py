"""The page's plots as plotly.js figure specs (plain dicts: data, layout), one per latency series,
one check-outcome grid per machine, and one per timing's drift against an anchor. The page embeds
them as JSON and plotly.js draws them in the browser; nothing here needs plotly's Python package.

plotly.js reads a few HTML-like tags in its text (hover labels, tick labels), so every string
from the database is HTML-escaped here too, and is shown as written.
"""

from __future__ import annotations

from html import escape
from typing import Any

from harness.gate.stats import IMPROVEMENT as FASTER
from harness.gate.stats import REGRESSION as SLOWER
from harness.gate.stats import UNDECIDED, UNJUDGED
from harness.history.anchors import DriftChart
from harness.history.judge import IMPROVEMENT, NEW_REGRESSION, REGRESSION
from harness.history.page_data import LatencyChart, MachinePage
from harness.records import AS_TORCH, FAILED, NOT_SUPPORTED, PASSED, SKIPPED

MS = 1e3  # the charts are in milliseconds
# Outcome -> (code in the grid, colour); the order is the legend's
OUTCOME_COLOURS = {PASSED: "#3a9a4a", FAILED: "#d7301f", AS_TORCH: "#4a7fc1",
                   NOT_SUPPORTED: "#b8b8b8", SKIPPED: "#e6e6e6"}
CHANGE_COLOURS = {NEW_REGRESSION: "#d7301f", REGRESSION: "#f08a24", IMPROVEMENT: "#3a9a4a"}
QUIET_CHANGE = "#9a9a9a"  # below the minimum effect, not significant
MEDIAN, BAND = "#1f3d7a", "rgba(80, 130, 210, 0.18)"
# A gate's verdict against the anchor -> its marker's colour (held: MEDIAN)
DRIFT_COLOURS = {SLOWER: "#d7301f", FASTER: "#3a9a4a", UNDECIDED: "#f08a24",
                 UNJUDGED: "#f08a24"}
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["select2d", "lasso2d", "toImage"]}


def latency_figure(chart: LatencyChart, commits: tuple[str, ...]) -> dict[str, Any]:
    """Per run its median (a bar for the per-process spread), the noise band, and a dashed line
    at each change point (between last good and first bad) labelled with its ratio."""
    x = [escape(r.name) for r in chart.timeline.runs]
    ms = [m * MS for m in chart.medians_s]
    hover = [[escape(r.run_id), f"{lo * MS:.4g}", f"{hi * MS:.4g}", len(w)]
             for r, (lo, hi), w in zip(chart.timeline.runs, chart.spread_s,
                                       chart.timeline.workers_s)]
    data = [
        {"type": "scatter", "mode": "lines", "x": x, "y": [hi * MS for _, hi in chart.band_s],
         "line": {"width": 0, "color": BAND}, "hoverinfo": "skip", "showlegend": False,
         "name": "noise band"},
        {"type": "scatter", "mode": "lines", "x": x, "y": [lo * MS for lo, _ in chart.band_s],
         "line": {"width": 0, "color": BAND}, "fill": "tonexty", "fillcolor": BAND,
         "hoverinfo": "skip", "showlegend": False, "name": "noise band"},
        {"type": "scatter", "mode": "lines+markers", "x": x, "y": ms, "name": "median",
         "line": {"color": MEDIAN, "width": 1.5}, "marker": {"size": 5, "color": MEDIAN},
         "error_y": {"type": "data", "symmetric": False, "thickness": 1, "width": 0,
                     "color": "rgba(31, 61, 122, 0.45)",
                     "array": [hi * MS - m for m, (_, hi) in zip(ms, chart.spread_s)],
                     "arrayminus": [m - lo * MS for m, (lo, _) in zip(ms, chart.spread_s)]},
         "customdata": hover,
         "hovertemplate": "%{x} (%{customdata[0]})<br>median %{y:.4g} ms<br>"
                          "processes: %{customdata[3]}, %{customdata[1]} to %{customdata[2]} ms"
                          "<extra></extra>"},
    ]
    shapes, notes = [], []
    for found in chart.changes:
        colour = CHANGE_COLOURS.get(found.verdict, QUIET_CHANGE)
        at = commits.index(found.first_bad.name) - 0.5  # between last good and first bad
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": at, "x1": at,
                       "y0": 0, "y1": 1, "line": {"color": colour, "width": 2, "dash": "dash"}})
        notes.append({"xref": "x", "yref": "paper", "x": at, "y": 1, "yanchor": "top",
                      "xanchor": "left", "showarrow": False, "bgcolor": "#ffffff",
                      "font": {"size": 11, "color": colour},
                      "text": f"{found.change.ratio:.3f}x"})
    layout = {"height": 250, "margin": {"l": 52, "r": 12, "t": 26, "b": 64},
              "showlegend": False, "hovermode": "closest", "shapes": shapes,
              "annotations": notes, "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
              "xaxis": {"type": "category", "categoryorder": "array",
                        "categoryarray": [escape(c) for c in commits], "tickangle": -45,
                        "tickfont": {"size": 9}, "gridcolor": "#eeeeee"},
              "yaxis": {"title": {"text": "ms", "font": {"size": 11}}, "gridcolor": "#eeeeee",
                        "zeroline": False}}
    return {"id": chart.key, "data": data, "layout": layout}


def checks_figure(machine: MachinePage) -> dict[str, Any] | None:
    """A grid of outcomes: a row per check that ever failed, a column per commit; None when
    none failed."""
    if not machine.check_rows:
        return None
    codes = {outcome: code for code, outcome in enumerate(OUTCOME_COLOURS)}
    column = {name: i for i, name in enumerate(machine.commits)}
    z, text, names = [], [], []
    for row in reversed(machine.check_rows):  # plotly draws the first row at the bottom
        line = row.timeline
        cells: list[int | None] = [None] * len(machine.commits)
        notes = [""] * len(machine.commits)
        for ref, (outcome, message) in zip(line.runs, line.outcomes):
            i = column[ref.name]
            cells[i] = codes.get(outcome)
            first = (message or "").strip().splitlines()[0][:160] if message else ""
            notes[i] = escape(f"{outcome}: {first}" if first else outcome)
        z.append(cells)
        text.append(notes)
        names.append(escape(f"{line.impl} {line.suite}::{line.check} {line.case_id}"))
    n = len(OUTCOME_COLOURS)
    scale = [[edge, colour] for code, colour in enumerate(OUTCOME_COLOURS.values())
             for edge in (code / n, (code + 1) / n)]
    axis = [escape(c) for c in machine.commits]
    data = [{"type": "heatmap", "x": axis, "y": names, "z": z, "text": text,
             "zmin": -0.5, "zmax": n - 0.5, "colorscale": scale, "showscale": False,
             "xgap": 1, "ygap": 2, "hoverongaps": False,
             "hovertemplate": "%{y}<br>%{x}: %{text}<extra></extra>"}]
    layout = {"height": 100 + 24 * len(names), "margin": {"l": 10, "r": 12, "t": 30, "b": 70},
              "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
              "xaxis": {"type": "category", "categoryorder": "array",
                        "categoryarray": axis, "tickangle": -45,
                        "tickfont": {"size": 9}},
              "yaxis": {"automargin": True, "type": "category", "tickfont": {"size": 11}}}
    return {"id": f"checks-{machine.key}", "data": data, "layout": layout}


def drift_figure(chart: DriftChart) -> dict[str, Any]:
    """Per head commit the gate's ratio against the anchor (a bar for its interval, the marker
    coloured by its verdict), a line at 1 and a dashed one at 1 + the gate's minimum effect."""
    points = chart.points
    x = [escape(p.head.name) for p in points]
    y = [p.ratio for p in points]
    hover = [[escape(p.head.run_id), escape(p.said), p.processes,
              escape(p.interval), f"{p.p:.2g}"] for p in points]
    data = [{"type": "scatter", "mode": "lines+markers", "x": x, "y": y, "name": "ratio",
             "line": {"color": MEDIAN, "width": 1.5},
             "marker": {"size": 7, "color": [DRIFT_COLOURS.get(p.verdict, MEDIAN)
                                             for p in points]},
             "error_y": {"type": "data", "symmetric": False, "thickness": 1, "width": 3,
                         "color": "rgba(31, 61, 122, 0.45)",
                         "array": [(p.high - p.ratio) if p.high is not None else 0
                                   for p in points],
                         "arrayminus": [(p.ratio - p.low) if p.low is not None else 0
                                        for p in points]},
             "customdata": hover,
             "hovertemplate": "%{x} (%{customdata[0]})<br>%{y:.3f}x the anchor "
                              "%{customdata[3]}<br>%{customdata[1]}, %{customdata[2]}, p "
                              "%{customdata[4]}<extra></extra>"}]
    limit = 1 + points[-1].min_effect
    shapes = [{"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": level,
               "y1": level, "line": {"color": colour, "width": 1.5, "dash": dash}}
              for level, colour, dash in ((1.0, QUIET_CHANGE, "solid"),
                                          (limit, CHANGE_COLOURS[NEW_REGRESSION], "dash"))]
    layout = {"height": 250, "margin": {"l": 52, "r": 12, "t": 26, "b": 64},
              "showlegend": False, "hovermode": "closest", "shapes": shapes,
              "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
              "xaxis": {"type": "category", "categoryorder": "array", "categoryarray": x,
                        "tickangle": -45, "tickfont": {"size": 9}, "gridcolor": "#eeeeee"},
              "yaxis": {"title": {"text": "head / anchor", "font": {"size": 11}},
                        "gridcolor": "#eeeeee", "zeroline": False,
                        "range": drift_range(chart, limit)}}
    return {"id": chart.key, "data": data, "layout": layout}


def drift_range(chart: DriftChart, limit: float) -> list[float]:
    """The y range: every interval, 1 and the minimum effect's line, with a margin."""
    values = [1.0, limit] + [v for p in chart.points for v in (p.low, p.ratio, p.high)
                             if v is not None]
    low, high = min(values), max(values)
    margin = (high - low) * 0.1 or 0.01
    return [low - margin, high + margin]
