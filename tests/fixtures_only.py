"""Classes written as third-party libraries write them: a minGRU on a bias-free projection (as
minGRU-pytorch's), which takes bias=False and one layer only and says so; and an inference-only
GRU that hands its input to numpy."""

from __future__ import annotations

import torch
from torch import nn

from harness.families.minimal import g
from harness.impls.scratch import ScratchGRU


class BiasFreeMinGRU(nn.Module):
    """h' = (1 - z) h + z g(h̃), [z; h̃] = W x: one nn.Linear(bias=False), one layer."""

    harness_capabilities = {  # noqa: RUF012
        "only": {"bias": False, "num_layers": 1, "bidirectional": False},
        "packed": False, "unbatched": False, "dropout": False}

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        if bias or num_layers != 1 or bidirectional:
            raise ValueError("BiasFreeMinGRU takes bias=False, one layer, one direction only")
        self.hidden_size, self.batch_first = hidden_size, batch_first
        self.to_gate_and_hidden = nn.Linear(input_size, 2 * hidden_size, bias=False,
                                            device=device, dtype=dtype)

    def load_reference_weights(self, state_dict):
        with torch.no_grad():
            self.to_gate_and_hidden.weight.copy_(state_dict["weight_ih_l0"])

    def forward(self, x, hx=None):
        if x.dim() != 3:  # torch's own checks, with torch's exception types
            raise ValueError(f"BiasFreeMinGRU: Expected input to be 3D, got {x.dim()}D input")
        if self.batch_first:
            x = x.transpose(0, 1)
        if hx is not None and tuple(hx.shape) != (1, x.shape[1], self.hidden_size):
            raise RuntimeError(f"Expected hidden size (1, {x.shape[1]}, {self.hidden_size}), "
                               f"got {tuple(hx.shape)}")
        gate, hidden = self.to_gate_and_hidden(x).chunk(2, dim=-1)  # (T, B, H) each
        z = torch.sigmoid(gate)
        h = x.new_zeros(x.shape[1], self.hidden_size) if hx is None else hx[0]
        outputs = []
        for t in range(x.shape[0]):
            h = (1 - z[t]) * h + z[t] * g(hidden[t])
            outputs.append(h)
        output = torch.stack(outputs)
        return (output.transpose(0, 1) if self.batch_first else output), h.unsqueeze(0)


class NumpyGRU(ScratchGRU):
    """Inference only: its input goes through numpy (a runtime that takes arrays)."""

    harness_capabilities = {"autograd": False}  # noqa: RUF012

    def forward(self, input, hx=None):
        if isinstance(input, torch.Tensor):
            input = torch.from_numpy(input.numpy())
        return super().forward(input, hx)
