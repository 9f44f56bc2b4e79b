"""How gradients flow back through time: the vanishing and exploding gradients of the course.

For a loss on the last step, ||dL/dh_t|| is measured at every earlier step t by running the
implementation one step at a time (the contract guarantees that equals the full run) and reading
the gradient that reaches each carried state. Pascanu et al. (2013) bound it by the recurrent
weights' spectral radius to the power of the lag, so the curves are measured at torch's standard
initialisation and with the recurrent weights rescaled to spectral radius 0.5, 1.0 and 1.5.
From each curve: the fitted per-step rate (below 1 vanishes, above 1 explodes), the lag at which
the gradient falls below 1e-6 of its value at the last step, and whether anything became
non-finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.conformance.gradients import NoGradient
from harness.core.case import Case
from harness.core.contract import Inputs

# Initialisations the curves are measured at: torch's standard one, and spectral radii.
RADII: dict[str, float | None] = {"standard": None, "rho0.5": 0.5, "rho1.0": 1.0, "rho1.5": 1.5}
STANDARD = Case(seq_len=200, batch=4, input_size=16, hidden_size=32)
VANISHED = 1e-6  # a gradient below this fraction of its last-step value has vanished


@dataclass(frozen=True)
class Curve:
    """||dL/dh_{T-k}|| for lags k = 0 .. T-1 (k = 0 is the last step, where the loss is).
    reached: whether any gradient reached h_{T-k} at all (a norm of 0 can still be reached)."""

    norms: tuple[float, ...]
    reached: tuple[bool, ...] | None = None

    def unreached_lags(self, other: Curve) -> list[int]:
        """Lags where ``other``'s gradient reached h_t and this curve's did not."""
        if self.reached is None or other.reached is None:
            return []
        return [k for k, (mine, theirs) in enumerate(zip(self.reached, other.reached))
                if theirs and not mine]

    @property
    def nonfinite(self) -> bool:
        return not all(math.isfinite(n) for n in self.norms)

    @property
    def rate(self) -> float | None:
        """exp(slope) of log-norm against lag, over finite non-zero norms: the factor the
        gradient is multiplied by per step back in time."""
        points = [(k, math.log(n)) for k, n in enumerate(self.norms) if math.isfinite(n) and n > 0]
        if len(points) < 3:
            return None
        lags, logs = zip(*points)
        if max(logs) == min(logs):
            return 1.0
        from scipy import stats  # scipy.stats costs 0.8 s to import: only where a rate is fit

        return math.exp(stats.linregress(lags, logs).slope)

    @property
    def vanish_lag(self) -> int | None:
        """The first lag at which the norm is below 1e-6 of the last step's; None if never."""
        last = self.norms[0]
        for lag, norm in enumerate(self.norms):
            if math.isfinite(norm) and norm < VANISHED * last:
                return lag
        return None


def gradient_curve(run, module, case: Case, inputs: Inputs, *, seed: int) -> Curve:
    """Run one step at a time carrying the state; backward from a random gradient on the last
    step's h; read dL/dh_t on each carried h."""
    step = case.with_(seq_len=1, lengths=None)
    time_dim = 1 if case.batch_first else 0
    state, carried, out = inputs.hx, [], None
    for t in range(case.seq_len):
        x_t = inputs.x.narrow(time_dim, t, 1)
        out = run(module, Inputs(x_t, None, state), step)
        if not out.h_n.requires_grad:
            raise NoGradient(f"no gradient reaches h_t: h_n of step {t} was computed without "
                             "autograd (no_grad, detached, or outside torch)")
        out.h_n.retain_grad()
        carried.append(out.h_n)
        state = out.state
    # The loss reads the last state itself, so lag 0 is dL/dh_T = the upstream gradient.
    last = carried[-1]
    generator = torch.Generator().manual_seed(seed)
    upstream = torch.randn(last.shape, generator=generator, dtype=torch.float64)
    (last * upstream.to(last.dtype).to(last.device)).sum().backward()
    norms = [float(h.grad.double().norm()) if h.grad is not None else 0.0 for h in carried]
    reached = [h.grad is not None for h in carried]
    return Curve(tuple(reversed(norms)), tuple(reversed(reached)))


def init_name(case: Case) -> str:
    return "standard" if case.radius is None else f"rho{case.radius:.1f}"


def cosine(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    flat_a = torch.cat([t.double().flatten() for t in a])
    flat_b = torch.cat([t.double().flatten() for t in b])
    return float(flat_a @ flat_b / (flat_a.norm() * flat_b.norm()))
