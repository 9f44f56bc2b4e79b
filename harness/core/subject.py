"""An implementation under test paired with its family's torch reference, for one case.

A Subject draws the case's reference weights and data from a generator seeded by the case (never
from torch's global RNG, which an implementation may touch), loads the same weights into the
implementation and into torch's module, and runs either through the forward contract. The
reference always runs on the CPU, so a CUDA implementation is compared against the CPU result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.core.case import Case
from harness.core.contract import Inputs, Outputs, call
from harness.core.families import Family
from harness.core.spec import Capabilities, ImplSpec


def reference_weights(case: Case, fam: Family) -> dict[str, Tensor]:
    """torch's state_dict for the case's reference, drawn U(-1/sqrt(H), 1/sqrt(H)) as torch's
    default initialisation does, from the case's own seed, with the recurrent blocks rescaled
    to ``case.radius`` when it is set. CPU tensors in the case's dtype."""
    module = fam.build_reference(
        **case.torch_kwargs(), **fam.constructor_kwargs(case.proj_size), dtype=case.torch_dtype
    )
    generator = torch.Generator().manual_seed(case.data_seed)
    bound = 1.0 / math.sqrt(case.hidden_size)
    drawn = {
        name: (torch.rand(value.shape, generator=generator, dtype=torch.float64) * 2 - 1)
        .mul_(bound)
        for name, value in module.state_dict().items()
    }
    if case.radius is not None:
        drawn = rescaled(drawn, fam, case.radius)
    return {name: value.to(case.torch_dtype) for name, value in drawn.items()}


def spectral_radius(matrix: Tensor) -> float:
    return float(torch.linalg.eigvals(matrix.double()).abs().max())


def rescaled(weights: dict[str, Tensor], fam: Family, radius: float) -> dict[str, Tensor]:
    """The weights with every (H, H) gate block of each weight_hh scaled to spectral radius
    ``radius`` (with proj_size the blocks are (H, P) and are scaled by their largest singular
    value instead); a diagonal recurrence (weight_hh of shape (H,)) is scaled so its largest
    magnitude is ``radius``."""
    out = dict(weights)
    for name, weight in weights.items():
        if name.startswith("weight_hh") and weight.dim() == 1:
            out[name] = weight * (radius / float(weight.abs().max()))
        elif name.startswith("weight_hh"):
            blocks = weight.chunk(fam.gates, dim=0)  # each (H, h_out)
            out[name] = torch.cat([b * (radius / size(b)) for b in blocks])
    return out


def size(block: Tensor) -> float:
    if block.shape[0] == block.shape[1]:
        return spectral_radius(block)
    return float(torch.linalg.matrix_norm(block.double(), ord=2))


def make_inputs(
    case: Case,
    *,
    has_cell: bool,
    scale: float = 1.0,
    pad_value: float | None = 0.0,
    salt: int = 0,
    positive: bool = False,
) -> Inputs:
    """Random inputs for the case; hx is (h_0, c_0) when ``has_cell`` (LSTM), else h_0.

    scale: multiplies x (e.g. 100 for large-magnitude checks).
    pad_value: the value at padded steps; None fills them with large random noise instead.
    salt: gives different data for the same case (two distinct inputs, two distinct hx).
    positive: draw hx inside a positive state domain (log-normal, exp(N(0, 1/4))).
    """
    generator = torch.Generator().manual_seed(case.data_seed + 7919 * (salt + 1))
    batch = 1 if case.batch is None else case.batch
    # Drawn in float64 so float32 and float64 cases see the same numbers.
    x = torch.randn(case.seq_len, batch, case.input_size, generator=generator, dtype=torch.float64)
    x = x * scale
    hx = None
    if case.with_hx:
        rows = case.num_layers * case.num_directions
        h = torch.randn(rows, batch, case.h_out, generator=generator, dtype=torch.float64)
        c = torch.randn(rows, batch, case.hidden_size, generator=generator, dtype=torch.float64)
        if positive:
            h, c = (0.5 * h).exp(), (0.5 * c).exp()
        hx = (h, c) if has_cell else (h,)
    lengths = None
    if case.lengths is not None:
        lengths = torch.tensor(case.lengths, dtype=torch.int64)
        padded = torch.arange(case.seq_len).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
        if pad_value is None:  # drawn last, so x and hx are the same as with a pad value
            noise = 100 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
            x = torch.where(padded.unsqueeze(2), noise, x)
        else:
            x = x.masked_fill(padded.unsqueeze(2), pad_value)
    return layout(case, x, lengths, hx)


def layout(case: Case, x: Tensor, lengths: Tensor | None, hx: tuple[Tensor, ...] | None) -> Inputs:
    """Put time-major (T, B, I) data and (L*D, B, F) states into the case's layout, dtype and
    device; hx is given as (h,) or (h, c)."""
    dtype, device = case.torch_dtype, torch.device(case.device)
    if case.unbatched:
        x = x.squeeze(1)
    elif case.batch_first:
        x = x.transpose(0, 1).contiguous()
    state = None
    if hx is not None:
        parts = tuple((s.squeeze(1) if case.unbatched else s).to(device, dtype) for s in hx)
        state = parts if len(parts) == 2 else parts[0]
    return Inputs(x.to(device, dtype), lengths, state)


@dataclass(frozen=True)
class Subject:
    """The implementation ``spec`` and its family's torch reference, for ``case``."""

    spec: ImplSpec
    case: Case

    @property
    def family_def(self) -> Family:
        return self.spec.family_def

    def inputs(self, **kwargs) -> Inputs:
        """Random inputs for the case (see make_inputs for the options)."""
        family = self.family_def
        return make_inputs(self.case, has_cell=family.has_cell,
                           positive=family.state_domain == "positive", **kwargs)

    def weights(self) -> dict[str, Tensor]:
        return reference_weights(self.case, self.family_def)

    def build(self, weights: dict[str, Tensor] | None = None, *,
              gradients: bool = False) -> nn.Module:
        """The implementation, built for the case, holding the reference weights.

        gradients: the check takes gradients through it, so it runs in training mode, as
        training runs it (cuDNN's RNNs refuse backward in eval mode) — unless the case has
        dropout, which training mode would switch on."""
        module = self.spec.build(self.case)
        state = self.weights() if weights is None else weights
        device = torch.device(self.case.device)
        self.spec.load_weights(module, {k: v.to(device) for k, v in state.items()})
        if gradients and self.case.dropout == 0:
            module.train()
        return module

    def reference(self, weights: dict[str, Tensor] | None = None) -> nn.Module:
        """torch's module of the family on the CPU, holding the reference weights."""
        case = self.case
        module = self.family_def.build_reference(
            **case.torch_kwargs(), **self.family_def.constructor_kwargs(case.proj_size),
            dtype=case.torch_dtype,
        )
        module.load_state_dict(self.weights() if weights is None else weights)
        return module.train(case.training)

    def run(self, module: nn.Module, inputs: Inputs, *, case: Case | None = None) -> Outputs:
        """The implementation's outputs for ``inputs``, through the forward contract. ``case``
        describes the inputs when they differ from the subject's (one step, one sequence)."""
        case = case or self.case
        return call(module, self.spec.capabilities, case, inputs,
                    has_cell=self.family_def.has_cell)

    def run_reference(
        self, inputs: Inputs, module: nn.Module | None = None, *, case: Case | None = None
    ) -> Outputs:
        """torch's outputs for the same inputs (on the CPU, fed packed when lengths are set)."""
        reference = self.reference() if module is None else module
        case = (case or self.case).with_(device="cpu")
        # torch's module claims the whole contract: it is fed packed input when lengths are set.
        return call(reference, Capabilities(), case, inputs.to("cpu"),
                    has_cell=self.family_def.has_cell)
