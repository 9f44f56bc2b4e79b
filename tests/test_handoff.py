"""The controller of a run with worker processes never imports torch: its workers resolve the
implementations, describe the machine in run.json and say what it needs
(harness.conformance.handoff); bad input is still one line, exit 2, whoever finds it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import torch

from harness.conformance.handoff import HANDOFF_FILE, PENDING_FILE
from harness.registry.names import confirmed, defined, top_level_names


def test_a_verdict_under_workers_leaves_torch_to_them_and_run_json_describes_them(tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import sys
        from harness.cli import main
        code = main(["run", "--impl", "torch-gru", "--suite", "shapes", "-k",
                     "values_match_reference", "--no-report", "--confirm-alone", "0",
                     "-n", "2", "--out", {str(out)!r}])
        print("EXIT", code, "TORCH", "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert "EXIT 0 TORCH False" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    info = json.loads((out / "run.json").read_text())
    assert info["torch"] == torch.__version__ and info["threads"] == 1
    assert info["fingerprint"]["isa"] and info["fingerprint"]["blas"]  # torch's, from a worker
    assert info["argv"][:3] == ["seq-harness", "run", "--impl"]  # the command's, not pytest's
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert records and {r["run_id"] for r in records} == {info["run_id"]}
    assert not (out / PENDING_FILE).exists() and not (out / HANDOFF_FILE).exists()


def test_bad_input_only_a_worker_can_see_is_one_line_and_exit_2(tmp_path):
    """A class whose name the command confirms without importing it, but which does not build
    with torch's arguments: the workers find it, the run stops before any check, and the
    command says it in one line, once; the results directory it made is gone."""
    (tmp_path / "nobuild.py").write_text(textwrap.dedent("""
        import torch

        class NoBuild(torch.nn.Module):
            harness_family = "gru"

            def __init__(self, config):
                super().__init__()
    """))
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--impl-class", "nobuild:NoBuild", "-n", "2",
         "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("seq-harness: error: --impl-class 'nobuild:NoBuild'"), last
    assert "passed" not in done.stdout and not out.exists()
    # said once: not again in pytest's "! _pytest.outcomes.Exit: ... !" banner above
    assert (done.stdout + done.stderr).count("does not build") == 1, done.stdout + done.stderr


def test_names_are_confirmed_only_where_they_are_there():
    assert confirmed(impls=["torch-lstm", "gated-delta-chunk"])
    assert confirmed(impl_classes=["harness.impls.scratch:ScratchLSTM"], family="lstm")
    assert confirmed(impl_classes=["tests.mutants.bugs:SwappedGatesLSTM"], family="lstm")
    # not confirmed: harness.registry.choose then tells (or accepts what this cannot see)
    assert not confirmed(impls=["torch-lstn"])
    assert not confirmed(impl_classes=["harness.impls.scratch:ScratchLSTN"], family="lstm")
    assert not confirmed(impl_classes=["harness.impls.scratch:ScratchLSTM"], family="lstn")
    assert not confirmed(impls=["torch-lstm"], family="lstm")  # --family needs --impl-class
    assert not confirmed(impls=["torch-lstm"], skipped=["torch-gru"])
    assert not defined("math:sqrt")  # not a source file: only an import can tell
    assert not defined("no_such_module_anywhere:X") and not defined("harness.impls.scratch")


def test_top_level_names_include_conditional_and_imported_ones():
    tree = ast.parse(textwrap.dedent("""
        import numpy as np
        from torch import nn
        A = B = 1
        C: int = 2
        def f(): inner = 1
        class K: nested = 1
        if A:
            D = 3
        else:
            E = 4
        try:
            from fast import F
        except ImportError:
            F = None
            G = 5
        with open("x") as H:
            I = 6
    """))
    assert top_level_names(tree.body) == {"np", "nn", "A", "B", "C", "f", "K", "D", "E", "F",
                                          "G", "I"}
