"""A family published by a third party through the ``seq_harness.families`` entry points — a
package the kit has never heard of — is used by ``list``, ``run``, ``bench`` and the report, and
a class of that family runs with ``--impl-class M:C --family NAME`` like a torch-family class.

The package is installed the way importlib.metadata finds any installed distribution: a
``*.dist-info`` folder with its entry points, on the Python path of the commands (subprocesses,
as a user runs them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = '''
"""leaky: h_t = 0.5 h_{t-1} + tanh(W x_t + b), a family the kit does not ship."""
import torch
import torch.nn.functional as F

from harness.core.families import Family
from harness.core.layer import NamedParameters
from harness.core.spec import Capabilities, ImplSpec


class LeakyLoop(NamedParameters):
    gates = 1
    recurrence = "none"

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        return (0.5 * state[0] + torch.tanh(F.linear(x_t, w["ih"], w["b_ih"])),)


class LeakyFast(LeakyLoop):
    """The same maths, the projection of the whole sequence at once."""

    def run_direction(self, slot, x, state, mask, reverse):
        w = self.weights(slot)
        drive = torch.tanh(F.linear(x, w["ih"], w["b_ih"]))  # (T, B, H)
        h, outputs = state[0], [None] * x.shape[0]
        for t in (range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])):
            new = 0.5 * h + drive[t]
            if mask is not None:
                valid = mask[t].unsqueeze(1)
                h, outputs[t] = torch.where(valid, new, h), torch.where(valid, new, 0.0)
            else:
                h = outputs[t] = new
        return torch.stack(outputs), (h,)


LEAKY = Family("leaky", LeakyLoop, gates=1, recurrence="none", description="a leaky integrator")
LEAKY_LOOP = ImplSpec(name="leaky-loop", family="leaky", factory=LeakyLoop, origin="leakyrnn")
'''

ENTRY_POINTS = '''
[seq_harness.families]
leaky = leakyrnn:LEAKY

[seq_harness.impls]
leaky-loop = leakyrnn:LEAKY_LOOP
'''


def docs_signature_block() -> str:
    """docs/diagnosis.md's example: leakyrnn's LEAKY declaring its own bug signature."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "diagnosis.md").read_text()
    (block,) = re.findall(r"^```python\n(.*?)^```", docs, flags=re.S | re.M)
    return block


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The environment of a user who installed the leakyrnn package."""
    root = tmp_path_factory.mktemp("site")
    # the docs' LEAKY, with its own signature, in place of the plain one
    plain = 'LEAKY = Family("leaky", LeakyLoop, gates=1, recurrence="none", description="a ' \
        'leaky integrator")\n'
    assert plain in PACKAGE
    (root / "leakyrnn.py").write_text(textwrap.dedent(PACKAGE.replace(
        plain, docs_signature_block() + "\n\n")))
    dist = root / "leakyrnn-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: leakyrnn\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def seq_harness(env, cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_list_shows_the_family_and_its_entry(installed, tmp_path):
    listing = seq_harness(installed, tmp_path, "list").stdout
    assert any(line.startswith("leaky-loop") and " leaky " in line
               for line in listing.splitlines()), listing


@pytest.mark.slow
def test_run_bench_and_report_use_the_family(installed, tmp_path):
    run = seq_harness(installed, tmp_path, "run", "--impl", "leaky-loop",
                      "--impl-class", "leakyrnn:LeakyFast", "--family", "leaky",
                      "--suite", "shapes", "--suite", "streaming", "--workers", "0",
                      "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").open()]
    assert {r["impl"] for r in records} == {"leaky-loop", "leaky-fast"}
    assert {r["family"] for r in records} == {"leaky"}
    assert any(r["outcome"] == "passed" and r["check"] == "values_match_reference"
               and r["impl"] == "leaky-fast" for r in records)
    bench = seq_harness(installed, tmp_path, "bench", "--impl", "leaky-loop", "--impl-class",
                        "leakyrnn:LeakyFast", "--family", "leaky", "--phase", "inference",
                        "--workers", "1", "--min-run-time", "0.01", "--no-memory",
                        "--no-peak", "--out", str(tmp_path / "bench"))
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    report = seq_harness(installed, tmp_path, "report", str(tmp_path / "run"),
                         str(tmp_path / "bench"), "--output", str(tmp_path / "report.md"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report.md").read_text()
    assert "| leaky-fast " in text and "| leaky " in text
    # the family's baseline is its reference loop: the fast class is timed against it
    assert "leaky-loop" in text and "1.00x" in text


def test_the_family_s_own_signature_names_its_mistake(installed, tmp_path):
    """docs/diagnosis.md's example, installed: a class with the leak on the input fails and is
    diagnosed with the family's own signature, through the entry point."""
    run = seq_harness(installed, tmp_path, "run", "--impl-class", "leakyrnn:LeakOnInput",
                      "--family", "leaky", "--suite", "shapes", "--workers", "0",
                      "-k", "values_match_reference and T5-B3-I3-H7]",
                      "--out", str(tmp_path / "run"))
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").open()]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert failed and all(r["metrics"]["diagnosis"]["signatures"] == ["leak-on-input"]
                          for r in failed)
    assert "the leak applied to the input, not the state" in run.stdout


def test_a_family_that_fails_to_load_is_named_without_hiding_the_others(tmp_path):
    root = tmp_path / "site"
    dist = root / "broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[seq_harness.families]\nnope = no_such_module:F\n")
    env = {**os.environ, "PYTHONPATH": str(root)}
    bad = seq_harness(env, tmp_path, "run", "--impl-class", "leakyrnn:LeakyLoop",
                      "--family", "nope", "--suite", "shapes")
    assert bad.returncode == 2
    assert "nope" in bad.stderr and "no_such_module" in bad.stderr
    assert seq_harness(env, tmp_path, "list").returncode == 0
