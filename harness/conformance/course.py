"""The course chapter's patterns as reusable pieces: its many-to-one SimpleRNN, a per-step head,
and its variable-length data pipeline (pad_sequence in a DataLoader collate).

The suites run every implementation inside these, the way users actually deploy an RNN, and
compare the whole model with the same model built around torch's module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from harness.core.contract import Inputs, Outputs


def last_valid_step(output: Tensor, lengths: Tensor, *, batch_first: bool) -> Tensor:
    """output[b, lengths[b] - 1] for every sequence b: (B, F). The correct many-to-one input;
    the naive output[:, -1] reads padding for every sequence shorter than the batch."""
    steps = (lengths.to(output.device) - 1).clamp(min=0)  # (B,)
    if batch_first:
        return output[torch.arange(output.size(0), device=output.device), steps]
    return output[steps, torch.arange(output.size(1), device=output.device)]


def naive_last_step(output: Tensor, *, batch_first: bool) -> Tensor:
    """The course's ``output[:, -1, :]`` (time-major: output[-1])."""
    return output[:, -1, :] if batch_first else output[-1]


class SimpleRNN(nn.Module):
    """The course's many-to-one model: a recurrent layer, then a Linear on the last step.

    ``run`` calls the recurrent layer (through the harness' forward contract); the head reads
    the last *valid* step of each sequence, or the naive last padded step when asked to.
    """

    def __init__(self, run: Callable[[Inputs], Outputs], features: int, output_size: int, *,
                 batch_first: bool, dtype: torch.dtype, generator: torch.Generator) -> None:
        super().__init__()
        self.run = run
        self.batch_first = batch_first
        self.fc = nn.Linear(features, output_size, dtype=dtype)
        with torch.no_grad():
            for p in self.fc.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))

    def forward(self, inputs: Inputs, *, naive: bool = False) -> Tensor:
        output = self.run(inputs).output
        if naive:
            last = naive_last_step(output, batch_first=self.batch_first)
        else:
            lengths = inputs.lengths
            if lengths is None:
                steps = output.size(1 if self.batch_first else 0)
                lengths = torch.full((output.size(0 if self.batch_first else 1),), steps)
            last = last_valid_step(output, lengths, batch_first=self.batch_first)
        return self.fc(last.to(self.fc.weight.device))


class SequenceDataset(Dataset):
    """The course's dataset of variable-length sequences with one target each."""

    def __init__(self, sequences: Sequence[Tensor], targets: Sequence[int]) -> None:
        self.sequences, self.targets = list(sequences), list(targets)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.sequences[index], self.targets[index]


def collate_padded(batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """DataLoader collate for variable-length sequences: (padded (B, T_max, I), lengths (B,),
    targets (B,)), padded with pad_sequence(batch_first=True) as in the course."""
    sequences = [seq for seq, _ in batch]
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.int64)
    targets = torch.tensor([target for _, target in batch])
    return pad_sequence(sequences, batch_first=True), lengths, targets
