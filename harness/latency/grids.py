"""Latency grids: named sets of shapes a benchmark times, and the families they are meant for.

Not to be confused with the conformance grids (harness.conformance.grids), which are small
exact-check shapes; these are the shapes where speed is measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.case import Case
from harness.core.op_case import OpCase, case_from_dict
from harness.core.phases import PHASES
from harness.core.spec import ImplSpec


@dataclass(frozen=True)
class LatencyGrid:
    """A named set of shapes, the families they are meant for, and default settings."""

    name: str
    cases: tuple[Case, ...]
    families: frozenset[str] | None = None  # None: every family
    phases: tuple[str, ...] = PHASES
    min_run_time: float = 0.5
    workers: int = 3

    @property
    def kind(self) -> str:
        """The subjects its shapes are for: modules, or ops (harness.core.op_case)."""
        return getattr(self.cases[0], "kind", "module") if self.cases else "module"

    def covers(self, spec: ImplSpec) -> bool:
        return spec.family_def.kind == self.kind and (
            self.families is None or spec.family in self.families)


def varlen_cases(seq_len: int, batch: int, size: int) -> tuple[Case, ...]:
    """Lengths uniform in [T/3, T] (seeded), fed packed; and the same batch padded to T."""
    generator = np.random.default_rng(seq_len * 1000 + batch)
    lengths = tuple(int(n) for n in generator.integers(seq_len // 3, seq_len + 1, batch))
    lengths = (seq_len, *lengths[1:])  # the longest is the padded length
    padded = Case(seq_len=seq_len, batch=batch, input_size=size, hidden_size=size)
    return (padded.with_(lengths=lengths), padded)


LATENCY_GRIDS: dict[str, LatencyGrid] = {
    "smoke": LatencyGrid("smoke", (Case(seq_len=10, batch=4, input_size=32, hidden_size=32),),
                         min_run_time=0.05, workers=2),
    # PyTorch's RNN benchmark shape, and the same at B=1 (one stream served at a time).
    "standard": LatencyGrid(
        "standard", (Case(seq_len=100, batch=64, input_size=512, hidden_size=512),
                     Case(seq_len=100, batch=1, input_size=512, hidden_size=512)),
        min_run_time=1.0, workers=3),
    "deepbench": LatencyGrid(
        "deepbench",
        tuple(Case(seq_len=t, batch=b, input_size=h, hidden_size=h)
              for h in (256, 512) for b in (1, 4, 16, 64) for t in (25, 50)),
        families=frozenset({"lstm", "gru"}), phases=("inference", "forward_backward"),
        min_run_time=0.2, workers=2,
    ),
    "gate": LatencyGrid("gate", (Case(seq_len=50, batch=8, input_size=128, hidden_size=128),),
                        phases=("inference", "forward_backward"), min_run_time=0.3, workers=10),
    "varlen": LatencyGrid("varlen", varlen_cases(100, 16, 128) + varlen_cases(200, 16, 128),
                          min_run_time=0.3, workers=2),
    # The main job's quick look at variable lengths: one batch, packed and padded.
    "varlen-small": LatencyGrid("varlen-small", varlen_cases(100, 16, 128),
                                phases=("inference", "forward_backward"), min_run_time=0.2,
                                workers=2),
    # Where a parallel scan and a sequential loop part ways: long sequences, small width.
    "long": LatencyGrid(
        "long", tuple(Case(seq_len=t, batch=2, input_size=64, hidden_size=64)
                      for t in (256, 1024, 4096, 16384)),
        phases=("inference", "forward_backward"), min_run_time=0.1, workers=2),
}


def op_grid(batches, lengths, heads, dims) -> tuple[OpCase, ...]:
    return tuple(OpCase(seq_len=t, batch=b, heads=h, key_dim=d, value_dim=d)
                 for d in dims for h in heads for b in batches for t in lengths)


# The matrix-state ops: the op grid of the full job (B 1 and 8, T up to 16384, H 4 and 16, K = V
# 64 and 128); the shape of the chunked forms' speed targets (T=4096, B=1, H=4, K=V=64: a
# recurrent loop's forward+backward there takes 10-30 s a call); the main job's quick look.
LATENCY_GRIDS["ops"] = LatencyGrid(
    "ops", op_grid((1, 8), (256, 1024, 4096, 16384), (4, 16), (64, 128)),
    phases=("inference", "forward_backward"), min_run_time=0.1, workers=2)
LATENCY_GRIDS["ops-target"] = LatencyGrid(
    "ops-target", op_grid((1,), (4096,), (4,), (64,)),
    phases=("inference", "forward_backward"), min_run_time=0.3, workers=2)
LATENCY_GRIDS["ops-small"] = LatencyGrid(
    "ops-small", op_grid((1,), (256, 1024), (4,), (64,)),
    phases=("inference", "forward_backward"), min_run_time=0.1, workers=2)


def load_grid(name_or_path: str) -> LatencyGrid:
    """A built-in grid by name, or a JSON file {"name", "cases": [Case fields...], "families",
    "phases", "min_run_time", "workers"}; ValueError naming what is wrong."""
    if name_or_path in LATENCY_GRIDS:
        return LATENCY_GRIDS[name_or_path]
    path = Path(name_or_path)
    if not path.suffix == ".json" and not path.exists():
        raise ValueError(f"unknown grid {name_or_path!r}; valid: {', '.join(LATENCY_GRIDS)} or a "
                         "JSON grid file")
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"grid file {str(path)!r} cannot be read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"grid file {str(path)!r} does not parse: {error.msg} at line "
                         f"{error.lineno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise ValueError(f"grid file {str(path)!r} needs a non-empty \"cases\" list")
    try:
        cases = tuple(case_from_dict(c) for c in data["cases"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"grid file {str(path)!r}: {error}") from None
    phases = tuple(data.get("phases", PHASES))
    for phase in phases:
        if phase not in PHASES:
            raise ValueError(f"grid file {str(path)!r}: phase {phase!r} is invalid; valid: "
                             f"{', '.join(PHASES)}")
    families = data.get("families")
    return LatencyGrid(str(data.get("name", path.stem)), cases,
                None if families is None else frozenset(families), phases,
                float(data.get("min_run_time", 0.5)), int(data.get("workers", 3)))
