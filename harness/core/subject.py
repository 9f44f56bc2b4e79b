"""An implementation under test paired with its family's torch reference, for one case.

A Subject draws the case's reference weights and data from a generator seeded by the case (never
from torch's global RNG, which an implementation may touch), loads the same weights into the
implementation and into torch's module, and runs either through the forward contract. The
reference always runs on the CPU, so a CUDA implementation is compared against the CPU result.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from harness.core.case import DTYPES, Case
from harness.core.contract import Inputs, Outputs, Twin, call
from harness.core.families import Family, family
from harness.core.spec import Capabilities, ImplSpec
from harness.core.twins import (
    NEARBY,
    SharedCall,
    TwinKey,
    builder_name,
    copied,
    digest,
    nudged,
    shared,
    shared_call,
)


def reference_weights(case: Case, fam: Family) -> dict[str, Tensor]:
    """torch's state_dict for the case's reference, drawn U(-1/sqrt(H), 1/sqrt(H)) as torch's
    default initialisation does, from the case's own seed, with the recurrent blocks rescaled
    to ``case.radius`` when it is set. CPU tensors in the case's dtype, the caller's own (a
    check asks for them several times: they are drawn once per case and family, then copied)."""
    return {name: value.clone() for name, value in drawn_weights(case, fam.name).items()}


@functools.lru_cache(maxsize=64)
def drawn_weights(case: Case, family_name: str) -> dict[str, Tensor]:
    fam = family(family_name)
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
        """The implementation, built for the case, holding the reference weights, in the case's
        mode (eval unless the case trains).

        gradients: the check takes gradients through it. Gradients in eval mode are part of
        the contract, so the mode stays — except on a device where torch's own module refuses
        a backward pass in eval mode (cuDNN): there it runs in training mode, as training runs
        it, when the case has no dropout (the same function); gradients::gradients_in_eval_mode
        checks eval mode there on its own."""
        module = self.spec.build(self.case)
        state = self.weights() if weights is None else weights
        device = torch.device(self.case.device)
        self.spec.load_weights(module, {k: v.to(device) for k, v in state.items()})
        if gradients and self.train_for_gradients:
            module.train()
        return module

    @property
    def train_for_gradients(self) -> bool:
        """Gradient checks run in training mode: torch refuses them in eval mode here."""
        return (self.case.dropout == 0 and not self.case.training
                and self.family_def.refuses_eval_backward(self.case.device))

    def reference(self, weights: dict[str, Tensor] | None = None, *, device: str = "cpu",
                  gradients: bool = False) -> nn.Module:
        """The family's reference module (torch's, or the family's loop) holding the reference
        weights: on the CPU, where it defines the contract, or on ``device``, where torch's own
        module may behave otherwise (``gradients``: in training mode where it refuses a backward
        pass in eval mode, as ``build``)."""
        case = self.case
        module = self.family_def.build_reference(
            **case.torch_kwargs(), **self.family_def.constructor_kwargs(case.proj_size),
            dtype=case.torch_dtype, device=torch.device(device),
        )
        state = self.weights() if weights is None else weights
        module.load_state_dict({k: v.to(device) for k, v in state.items()})
        module.train(case.training)
        if gradients and device != "cpu" and self.train_for_gradients:
            module.train()
        return module

    def run(self, module: nn.Module, inputs: Inputs, *, case: Case | None = None) -> Outputs:
        """The implementation's outputs for ``inputs``, through the forward contract. ``case``
        describes the inputs when they differ from the subject's (one step, one sequence)."""
        case = case or self.case
        if not self.spec.capabilities.autograd:  # an inference-only class never gets a tensor
            inputs = inputs.detach()  # that requires grad (it may hand its input to numpy)
        return call(module, self.spec.capabilities, case, inputs,
                    has_cell=self.family_def.has_cell)

    def first_call(self) -> Outputs:
        """A freshly built implementation's outputs on the case's inputs (``inputs()``), copied:
        made once per process for the implementation and case, and read by each check that looks
        at that call alone (its shapes, its h_n rows, its values against the reference)."""
        return shared_call(SharedCall(
            ("implementation", self.spec.name), id(self.spec), self.case,
            lambda: copied(self.run(self.build(), self.inputs()))))

    def reference_call(self) -> Outputs:
        """The reference's outputs on the case's inputs, with their twin, no graph: made once per
        process for the family and case (which fixes the weights and inputs)."""
        family = self.family_def

        def compute() -> Outputs:
            with torch.no_grad():
                return self.run_reference(self.inputs())

        return shared_call(SharedCall(
            ("reference", family.name, builder_name(family.build_reference)), 0, self.case,
            compute))

    def run_reference(
        self, inputs: Inputs, module: nn.Module | None = None, *, case: Case | None = None,
        device: str = "cpu",
    ) -> Outputs:
        """The reference's outputs for the same inputs (fed packed when lengths are set), on the
        CPU — with their twin in another precision — or on ``device`` for a module built
        there (``reference(device=...)``)."""
        reference = self.reference() if module is None else module
        case = (case or self.case).with_(device=device)
        # torch's module claims the whole contract: it is fed packed input when lengths are set.
        outputs = call(reference, Capabilities(), case, inputs.to(device),
                       has_cell=self.family_def.has_cell)
        if device != "cpu" or (reference.training and case.dropout > 0):
            return outputs  # dropout draws anew: no twin gives the same function
        # The twin is computed on demand, after the implementation may have run on the same
        # tensors: it gets the values the reference had, not what a writing call left there.
        inputs = inputs.to("cpu").copy()
        compute = functools.partial(self._twin, reference, inputs, case)
        family = self.family_def

        def twin() -> Twin:  # shared by every subject of the family asking for the same one
            hx = inputs.hx if isinstance(inputs.hx, tuple) else (inputs.hx,)
            content = digest([*reference.state_dict().items(), ("x", inputs.x),
                              ("lengths", inputs.lengths),
                              *((f"hx{n}", h) for n, h in enumerate(hx))])
            return shared(TwinKey((family.name, builder_name(family.build_reference)), case,
                                  reference.training, content, compute))

        return replace(outputs, twin=functools.cache(twin))

    def _twin(self, reference: nn.Module, inputs: Inputs, case: Case) -> Twin:
        """The reference in the other precision (float64, or float32 for a float64 case), with
        the same weights and inputs, and at NEARBY points a few float32 units away: how far the
        answer moves under rounding alone."""
        other = "float32" if case.dtype == "float64" else "float64"
        state = reference.state_dict()
        exact = self._run_in(other, state, inputs, case, reference.training)
        nearby = []
        for k in range(NEARBY):
            generator = torch.Generator().manual_seed(case.data_seed + 104729 * (k + 1))
            moved_state = {name: nudged(value, generator) for name, value in state.items()}
            hx = inputs.hx
            hx = (None if hx is None else tuple(nudged(h, generator) for h in hx)
                  if isinstance(hx, tuple) else nudged(hx, generator))
            moved = Inputs(nudged(inputs.x, generator), inputs.lengths, hx)
            nearby.append(tuple(self._run_in(dtype, moved_state, moved, case, reference.training)
                                for dtype in (case.dtype, other)))
        return Twin(exact, tuple(nearby))

    def _run_in(self, dtype: str, state: dict[str, Tensor], inputs: Inputs, case: Case,
                training: bool) -> Outputs:
        """The family's reference in ``dtype`` holding ``state``, on ``inputs`` (cast)."""
        family = self.family_def
        module = family.build_reference(
            **case.torch_kwargs(), **family.constructor_kwargs(case.proj_size),
            dtype=DTYPES[dtype])
        module.load_state_dict({k: v.to(DTYPES[dtype]) for k, v in state.items()})
        module.train(training)
        with torch.no_grad():
            out = call(module, Capabilities(), case.with_(dtype=dtype),
                       inputs.to(dtype=DTYPES[dtype]), has_cell=family.has_cell)
        return out.detach()
