"""The report's first screen: the verdict (one row per implementation, a sentence per family that
says which conforms and which is fastest for sure), the compact latency tables on the page with
every figure in a details file beside it, and the speed-against-accuracy plot — on synthetic
records whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.case import Case
from harness.latency.grids import LATENCY_GRIDS
from harness.records import Record, RecordWriter, RunInfo, write_run_info
from harness.report import render, write_report

INFO = RunInfo(run_id="run-1", created="2024-01-01T00:00:00+00:00", harness_version="0.1.0",
               torch="2.3.0",
               python="3.11.0", platform="linux", processor="cpu", threads=1,
               cuda=None, git_commit=None, argv=["seq-harness"])
STANDARD = Case(seq_len=100, batch=64, input_size=512, hidden_size=512)
SMALL = Case(seq_len=50, batch=8, input_size=128, hidden_size=128)
# impl -> latency over torch-gru's (the spread of its blocks keeps intervals tight)
SPEED = {"torch-gru": 1.0, "fast-gru": 0.5, "slow-gru": 2.0, "wrong-gru": 0.25,
         "same-gru": 1.0}


def timing(impl: str, case: Case, phase: str, center: float, worker: int,
           rng: np.random.Generator) -> Record:
    samples = list(center * 1e-3 * (1 + 0.01 * rng.standard_normal(8)))
    return Record(impl=impl, family="gru", suite="latency", check=phase, outcome="passed",
                  case_id=case.id, case=case.to_dict(),
                  metrics={"samples_s": samples, "worker": worker})


def check(impl: str, outcome: str, error: float) -> Record:
    return Record(impl=impl, family="gru", suite="shapes", check="values_match_reference",
                  outcome=outcome, case_id="T5-B3-I3-H7", max_error=error, tolerance=1e-5,
                  compared=10, metrics={"tolerance_source": "family", "error": {"output": {
                      "max_abs": error, "rel_rms": error / 2, "p99_abs": error,
                      "values": 10, "error_sq": 10 * (error / 2) ** 2,
                      "reference_sq": 10.0}}})


@pytest.fixture
def run_dir(tmp_path):
    directory = tmp_path / "run"
    write_run_info(directory, INFO)
    writer = RecordWriter(directory)
    rng = np.random.default_rng(0)
    for impl, speed in SPEED.items():
        for case in (STANDARD, SMALL):
            for phase in ("inference", "forward_backward"):
                for worker in range(3):
                    writer.write(timing(impl, case, phase, speed * 10, worker, rng))
        writer.write(check(impl, "failed" if impl == "wrong-gru" else "passed",
                           0.0 if impl == "torch-gru" else 3e-6))
    writer.close()
    return directory


def verdict_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("## Verdict")
    return lines[start:lines.index("", lines.index("", start + 2) + 1)]


def regime_lines(text: str, family: str = "gru") -> tuple[str, dict[str, str]]:
    """The family's verdict bullet and its sub-bullets by regime label."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"- **{family}**"))
    subs = {}
    for line in lines[start + 1:]:
        if not line.startswith("  - "):
            break
        label, _, said = line[4:].partition(": ")
        subs[label] = said
    return lines[start], subs


def test_the_first_screen_says_which_conforms_and_which_is_fastest(run_dir):
    text = render([run_dir])
    first_screen = text.splitlines()[:40]
    assert "## Verdict" in first_screen
    sentence, regimes = regime_lines("\n".join(first_screen))
    assert "3 of 4 implementations conform (wrong-gru fails)" in sentence
    # wrong-gru is the fastest of all, and fails: the fastest *conforming* one is named.
    standard = regimes["T=100, B=64, I=H=512"]
    assert "inference: fast-gru, 0.50x (" in standard and "of torch-gru" in standard
    assert "fwd+bwd: fast-gru, 0.50x (" in standard
    assert "inference: fast-gru, 0.50x (" in regimes["other shapes"]


def test_verdict_rows_rank_conforming_entries_fastest_first_with_errors(run_dir):
    lines = verdict_lines(render([run_dir]))
    table = [line for line in lines if line.startswith("| gru")]
    order = [line.split("|")[2].strip() for line in table]
    assert order == ["torch-gru", "fast-gru", "same-gru", "slow-gru", "wrong-gru"]
    fast = table[1]
    assert "1.5e-06" in fast and "3.0e-06" in fast  # rel RMS, max abs of the outputs
    assert "❌ 1 failed" in table[-1]


def test_an_implementation_no_faster_for_sure_is_not_called_faster(tmp_path):
    directory = tmp_path / "run"
    write_run_info(directory, INFO)
    writer = RecordWriter(directory)
    rng = np.random.default_rng(1)
    for impl, speed in {"torch-gru": 1.0, "slow-gru": 2.0}.items():
        for worker in range(3):
            writer.write(timing(impl, STANDARD, "inference", speed, worker, rng))
        writer.write(check(impl, "passed", 0.0))
    writer.close()
    _, regimes = regime_lines(render([directory]))
    assert regimes == {"T=100, B=64, I=H=512":
                       "inference: torch-gru (the closest, slow-gru, is 1.99x (1.98–2.01))."}


LONG = LATENCY_GRIDS["long"].cases[1]
B1 = LATENCY_GRIDS["standard"].cases[1]


def test_the_verdict_speaks_per_regime_and_never_pools_shapes_that_disagree(tmp_path):
    """A scan 2x faster on long sequences and 1.6x slower at the standard shape: each regime
    gets its own sentence, and the table shows the standard shape's figure, which no sentence
    contradicts."""
    directory = tmp_path / "run"
    write_run_info(directory, INFO)
    writer = RecordWriter(directory)
    rng = np.random.default_rng(3)
    speeds = {"torch-gru": {STANDARD: 1.0, B1: 1.0, LONG: 1.0},
              "scan-gru": {STANDARD: 1.6, B1: 1.0, LONG: 0.5}}
    for impl, by_case in speeds.items():
        for case, speed in by_case.items():
            for worker in range(3):
                writer.write(timing(impl, case, "inference", speed, worker, rng))
        writer.write(check(impl, "passed", 0.0))
    writer.close()
    text = render([directory])
    _, regimes = regime_lines(text)
    assert regimes["T=100, B=64, I=H=512"].startswith(
        "inference: torch-gru (the closest, scan-gru, is 1.60x")
    assert "tie" in regimes["T=100, B=1, I=H=512"]
    (long,) = [said for label, said in regimes.items() if label.startswith("long sequences")]
    assert long.startswith("inference: scan-gru, 0.50x (")
    # the label names the shapes of the regime that were timed, not every shape of its grid
    assert f"long sequences (T={LONG.seq_len}, B={LONG.batch}, H={LONG.hidden_size})" in regimes
    (row,) = [x for x in verdict_lines(text) if x.startswith("| gru") and "scan-gru" in x]
    assert "1.60x" in row and "0.50x" not in row
    assert "at T=100, B=64, I=H=512 (the headline regime" in text


def test_latency_details_move_beside_the_report(run_dir, tmp_path):
    path = write_report([run_dir], tmp_path / "out" / "README.md")
    page = path.read_text()
    details = (tmp_path / "out" / "latency.md").read_text()
    assert "[latency.md](latency.md)" in page
    # The page: one compact table per phase at the standard shape, no other shape.
    assert STANDARD.id in page and SMALL.id not in page
    assert "### inference" in page and "### forward+backward" in page
    # The details: every shape and figure.
    assert SMALL.id in details and "IQR" in details and "tokens/s" in details
    assert len(page.splitlines()) < 120


def test_without_a_file_the_details_are_collapsed(run_dir):
    text = render([run_dir])
    assert "<details><summary>Every shape and figure</summary>" in text
    assert SMALL.id in text.split("<details>")[1]


def test_speed_against_accuracy_is_drawn_for_deployments(tmp_path):
    directory = tmp_path / "run"
    write_run_info(directory, INFO)
    writer = RecordWriter(directory)
    rng = np.random.default_rng(2)
    for impl, speed, error in (("torch-gru", 1.0, 0.0), ("int8-gru", 0.6, 1e-3)):
        for worker in range(3):
            writer.write(timing(impl, STANDARD, "inference", speed, worker, rng))
        writer.write(Record(
            impl=impl, family="gru", suite="accuracy", check="error_at_standard_shape",
            outcome="passed", case_id=STANDARD.id, compared=10,
            metrics={"tensors": {"output": {"max_abs": error, "rel_rms": error,
                                            "p99_abs": error}}}))
    writer.close()
    path = write_report([directory], tmp_path / "out" / "README.md")
    assert "![speed against accuracy](README-deployment.png)" in path.read_text()
    assert (tmp_path / "out" / "README-deployment.png").stat().st_size > 10_000


def test_a_timing_of_one_sample_has_no_interval_and_is_never_faster_for_sure():
    from harness.latency.ratios import geometric_mean_ratio

    once = geometric_mean_ratio([([[0.5]], [[1.0]])])
    assert once.value == pytest.approx(0.5) and not once.has_interval
    assert str(once) == "0.50x (one sample: no interval)"
    twice = geometric_mean_ratio([([[0.5], [0.51]], [[1.0], [1.01]])])
    assert twice.has_interval and twice.high < 1


def test_a_large_speed_up_keeps_its_digits_and_says_how_many_times_faster():
    from harness.latency.ratios import Ratio

    assert str(Ratio(0.0052, 0.0039, 0.0093)) == "0.0052x (0.0039–0.0093, 192.3x faster)"
    assert str(Ratio(0.5, 0.4, 0.6)) == "0.50x (0.40–0.60)"


def test_a_bench_without_checks_says_conformance_was_not_checked(tmp_path):
    directory = tmp_path / "bench"
    write_run_info(directory, INFO)
    writer = RecordWriter(directory)
    rng = np.random.default_rng(0)
    for impl in ("torch-gru", "fast-gru"):
        for phase in ("inference", "forward_backward"):
            for worker in range(3):
                writer.write(timing(impl, STANDARD, phase, SPEED[impl] * 10, worker, rng))
    writer.close()
    text = render([directory])
    assert "**gru**: conformance not checked in this run (timings only)." in text
    assert "nothing claimed runs here" not in text
    assert "inference: fast-gru, 0.50x (" in text  # the speed is still said
