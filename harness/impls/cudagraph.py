"""CUDA-graph variants of the fast from-scratch LSTM and GRU (fast-lstm-cudagraph,
fast-gru-cudagraph).

Why: at small batch a recurrent layer on a GPU is bound by kernel launches, not by arithmetic.
FastLSTM launches a handful of small kernels per time step; at B=1, H=256 each finishes long
before Python and the driver have launched the next one. A CUDA graph records the launches of one
whole forward once and replays them as a single launch. The maths stays FastLSTM's / FastGRU's:
these classes only decide when to capture, and what to replay.

What is graphed: forward on CUDA of a padded, fixed-length Tensor input — any layout (time-major,
batch_first, unbatched), any number of layers and directions, proj_size, with or without hx —
when no gradient is needed (torch.no_grad, torch.inference_mode, or nothing involved requires
grad). One graph is captured per key (input shape/dtype/device; hx given or not, and its shapes
and dtypes; batch_first; inference mode) on first use, after warm-up calls on a side stream as
torch's CUDA graph documentation does. Later calls copy the inputs into the graph's static
buffers, replay it, and return clones of its static outputs: a returned tensor is never
overwritten by a later call.

What falls back to the eager parent (the same maths, so the classes stay drop-in replacements):
CPU tensors; a PackedSequence or lengths=; a call that needs autograd; dropout active between
layers in training; autocast; an empty input; a call made while the current stream is itself
being captured (the eager ops then become part of the caller's graph).

Why autograd falls back instead of torch.cuda.make_graphed_callables: a graphed callable keeps
its saved activations and returns its outputs in static memory that the next forward overwrites,
so two forwards before one backward (or keeping an output across calls) silently give wrong
results. The eager path is always correct; training gains nothing here.

Parameters: a graph reads parameters through their addresses. In-place updates (optimiser steps,
load_state_dict, copy_) are seen by the next replay. A parameter replaced by another tensor
(module.to(), load_state_dict(assign=True), a new nn.Parameter assigned, functional_call) is
detected by its address, shape, stride and dtype, and every graph is dropped and captured again.

Limits: every call with the same key goes through the same static buffers, so call a module
from one stream (and thread) at a time. At most ``max_graphs`` keys are kept per module, the least
recently used dropped first. The registry entries claim only the graphed contract (CUDA, padded
fixed-length input, no dropout). The harness suites call forward with grad enabled and trainable
parameters, so on a GPU most of their checks of these entries go through the eager fallback;
tests/test_cudagraph.py checks the graphs themselves, under torch.no_grad.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from harness.impls.fast import FastGRU, FastLSTM

WARMUP_CALLS = 3  # eager calls on a side stream before capture, as torch's CUDA graph docs do


@dataclass
class Captured:
    """One captured forward: the graph and the static tensors it reads and writes."""

    graph: torch.cuda.CUDAGraph
    x: Tensor  # static input, the key's shape, contiguous
    hx: tuple[Tensor, ...]  # static h_0 (and c_0); () when hx was None
    result: Any  # static forward result: (output, h_n) or (output, (h_n, c_n)), graph memory


def clone(result: Any) -> Any:
    """Fresh copies of a forward result's tensors, in the same structure."""
    if isinstance(result, Tensor):
        return result.clone()
    return tuple(clone(part) for part in result)


class CudaGraphed:
    """Mixin over FastLSTM / FastGRU: forward replays a captured CUDA graph where it can (see the
    module docstring) and runs the eager parent everywhere else."""

    max_graphs = 8  # captured keys kept per module

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._graphs: OrderedDict[tuple, Captured] = OrderedDict()
        self._graphed_params: tuple = ()  # (address, shape, stride, dtype) the graphs read

    def forward(self, input, hx=None, *, lengths=None):
        parts = self._graphable(input, hx, lengths)
        if parts is None:
            return super().forward(input, hx, lengths=lengths)
        return self._replay(input, hx, parts)

    def _graphable(self, input, hx, lengths) -> tuple[Tensor, ...] | None:
        """hx as a tuple of tensors (() for None) when this call can be graphed, else None."""
        if lengths is not None or not isinstance(input, Tensor) or not input.is_cuda:
            return None
        if hx is None:
            parts: tuple = ()
        elif isinstance(hx, Tensor):
            parts = (hx,)
        elif isinstance(hx, (tuple, list)):
            parts = tuple(hx)
        else:
            return None  # the eager path raises torch's error
        if not all(isinstance(p, Tensor) and p.device == input.device for p in parts):
            return None
        needs_grad = torch.is_grad_enabled() and any(
            t.requires_grad for t in chain((input, *parts), self.parameters())
        )
        dropout = self.training and self.dropout > 0 and self.num_layers > 1
        if (needs_grad or dropout or input.numel() == 0 or torch.is_autocast_enabled()
                or torch.cuda.is_current_stream_capturing()):
            return None
        return parts

    def _replay(self, x: Tensor, hx, parts: tuple[Tensor, ...]):
        key = (
            tuple(x.shape), x.dtype, x.device,
            None if hx is None else (isinstance(hx, Tensor), *((p.shape, p.dtype) for p in parts)),
            self.batch_first, torch.is_inference_mode_enabled(),
        )
        params = tuple((p.data_ptr(), p.shape, p.stride(), p.dtype) for p in self.parameters())
        if params != self._graphed_params:
            self._graphs.clear()  # a parameter was replaced: the graphs read stale addresses
            self._graphed_params = params
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._capture(x, hx, parts)
            self._graphs[key] = captured
            while len(self._graphs) > self.max_graphs:  # least recently used first
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        captured.x.copy_(x)  # all on the current stream: copies, replay, then the clones
        for static, given in zip(captured.hx, parts):
            static.copy_(given)
        captured.graph.replay()
        return clone(captured.result)

    def _capture(self, x: Tensor, hx, parts: tuple[Tensor, ...]) -> Captured:
        """Warm up and capture the eager forward on static copies of this call's inputs. A bad
        input raises torch's error from the first warm-up call, before anything is captured."""
        with torch.cuda.device(x.device), torch.no_grad():
            static_x = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous
            static_hx = tuple(torch.empty(p.shape, dtype=p.dtype, device=p.device) for p in parts)
            static_x.copy_(x)
            for static, given in zip(static_hx, parts):
                static.copy_(given)
            # hx in the form the caller gave it: None, a tensor, or a tuple (h_0, c_0)
            hx_arg = None if hx is None else static_hx[0] if isinstance(hx, Tensor) else static_hx
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    super().forward(static_x, hx_arg)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # Captured on the warm-up stream, on x's device (torch's default capture stream
            # lives on whichever device first captured). Allocations come from the graph's pool.
            with torch.cuda.graph(graph, stream=side):
                result = super().forward(static_x, hx_arg)
        return Captured(graph, static_x, static_hx, result)

    def _apply(self, *args, **kwargs):
        self._graphs.clear()  # moved or cast: the graphs hold the old memory
        return super()._apply(*args, **kwargs)

    def __getstate__(self):
        state = super().__getstate__()  # deepcopy and pickle: graphs are a cache, not copied
        state.update(_graphs=OrderedDict(), _graphed_params=())
        return state


class CudaGraphLSTM(CudaGraphed, FastLSTM):
    """FastLSTM whose inference forward on CUDA is captured once as a CUDA graph and replayed;
    torch's constructor and parameter names."""


class CudaGraphGRU(CudaGraphed, FastGRU):
    """FastGRU whose inference forward on CUDA is captured once as a CUDA graph and replayed;
    torch's constructor and parameter names."""
