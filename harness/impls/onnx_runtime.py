"""torch's LSTM and GRU exported to ONNX and run by onnxruntime (onnxruntime-lstm,
onnxruntime-gru): the other common way a recurrent model leaves Python.

The module is torch's own class (so torch's weights load by name and torch validates its
arguments), with a forward that never runs torch's kernels: the first call — and the first call
after the weights changed, or the thread count — exports a plain copy of the module (or takes the
session of the same export made earlier in the process: same class, sizes, thread count and weight
bytes) with ``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``: it writes
ONNX's own LSTM/GRU operators in milliseconds, where the dynamo exporter takes seconds per export)
with dynamic sequence and batch axes, and opens an onnxruntime ``InferenceSession`` on the CPU
provider with ``intra_op_num_threads`` set to torch's thread count, so ``--threads`` pins both
runtimes. Later calls feed numpy arrays to the session.

Inputs are validated as torch validates them (its error types, before onnxruntime sees
anything: onnxruntime raises its own exception types). What onnxruntime cannot do is not
claimed: float64 (its LSTM kernel is float only), variable lengths (the exported graph has no
sequence_lens input), proj_size, CUDA, dropout (the graph is exported in eval mode), and no
gradient flows back (autograd: False). A batch of 0 is answered without the session:
onnxruntime 1.32 aborts the whole process on it, and an empty batch has nothing to compute.

onnxruntime is an optional dependency (the ``onnx`` extra); without it the
entries are listed as unavailable with that command, and their checks are *not supported*.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import io
import warnings
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.core.torch_inputs import time_major, validated_state
from harness.impls.snapshot import Snapshot

INSTALL = "pip install 'onnxruntime>=1.16' 'onnx>=1.14'"


@functools.cache  # per process: installed packages do not change while it runs
def onnx_unavailable() -> str | None:
    """None when onnxruntime (and onnx, which torch's exporter needs) are installed."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed; install with: {INSTALL}"
    return None


def export(module: nn.Module, example: tuple, inputs: list[str], outputs: list[str]) -> bytes:
    """The ONNX model of ``module`` (time-major, dynamic T and B axes) as bytes."""
    axes = {"input": {0: "T", 1: "B"}, "output": {0: "T", 1: "B"}}
    axes.update({name: {1: "B"} for name in (*inputs[1:], *outputs[1:])})
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's notes on tracing RNNs and its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buffer, dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes)
    return buffer.getvalue()


# Process-wide: the sessions of the last SESSIONS_KEPT exports, by structure, thread count and
# the weights' bytes, so that modules built alike with the same weights (a conformance case's
# checks build one each) share one export (~50 ms) instead of each making its own.
SESSIONS_KEPT = 64
_SESSIONS: collections.OrderedDict[tuple, Any] = collections.OrderedDict()


def new_session(torch_class: type[nn.RNNBase], config: dict, weights: dict[str, Tensor],
                names: list[str]) -> Any:
    """An onnxruntime session of a plain ``torch_class(**config)`` holding ``weights``."""
    import onnxruntime

    plain = torch_class(**config, dtype=torch.float32).eval()
    with torch.no_grad():
        plain.load_state_dict(weights)
    rows = config["num_layers"] * (2 if config["bidirectional"] else 1)
    x = torch.zeros(2, 1, config["input_size"])
    state = tuple(torch.zeros(rows, 1, config["hidden_size"]) for _ in names)
    model = export(plain, (x, state if len(state) == 2 else state[0]), ["input", *names],
                   ["output", *[n.replace("0", "n") for n in names]])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors reach the caller as exceptions
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeMixin:
    """forward: validate as torch does, then run the exported model in onnxruntime."""

    mode: str  # "LSTM" or "GRU", set by torch's class
    torch_class: ClassVar[type[nn.RNNBase]]
    harness_capabilities: ClassVar = {
        "packed": False, "proj_size": False, "dropout": False, "dtypes": {"float32"},
        "devices": {"cpu"}, "autograd": False}

    def session(self) -> Any:
        """The onnxruntime session of the current weights: exported again when a parameter's
        bytes differ from the export's (a version counter misses writes through ``.data``) or
        torch's thread count changed."""
        cached = getattr(self, "_onnx", None)  # (threads, snapshot, session) of the last export
        threads = torch.get_num_threads()
        if cached is not None and cached[0] == threads and cached[1].matches(self.parameters()):
            return cached[2]
        config = {k: getattr(self, k) for k in ("input_size", "hidden_size", "num_layers",
                                                 "bias", "bidirectional")}
        weights = {k: v.detach().cpu().float().contiguous() for k, v in self.state_dict().items()}
        digest = hashlib.sha256()
        for name, tensor in weights.items():
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
        key = (type(self), *config.values(), threads, digest.hexdigest())
        session = _SESSIONS.pop(key, None)
        if session is None:
            session = new_session(self.torch_class, config, weights, self.state_names())
        _SESSIONS[key] = session  # the most recently used last
        while len(_SESSIONS) > SESSIONS_KEPT:
            _SESSIONS.popitem(last=False)
        self._onnx = (threads, Snapshot.take(self.parameters()), session)
        return session

    def state_names(self) -> list[str]:
        return ["h0", "c0"] if self.mode == "LSTM" else ["h0"]

    def __getstate__(self) -> dict:
        """torch.save and deepcopy leave the session out (it cannot be pickled): it is a cache
        of the export, made again at a loaded copy's first call."""
        state = super().__getstate__()
        state.pop("_onnx", None)
        return state

    def forward(self, input: Tensor, hx=None):
        x, _, batched = time_major(input, None, mode=self.mode, batch_first=self.batch_first,
                                   input_size=self.input_size)  # (T, B, I); torch's errors
        rows, batch = self.num_layers * (2 if self.bidirectional else 1), x.shape[1]
        names = self.state_names()
        if hx is None:
            state = tuple(x.new_zeros(rows, batch, self.hidden_size) for _ in names)
        else:
            given = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
            if len(given) != len(names):
                raise RuntimeError(f"{self.mode} expects hx as {len(names)} tensor(s), got "
                                   f"{len(given)}")
            state = validated_state(given, rows=rows, batch=batch,
                                    sizes=(self.hidden_size,) * len(names), batched=batched)
        if batch == 0:  # see the module docstring: nothing to compute
            output = x.new_zeros(x.shape[0], 0, rows // self.num_layers * self.hidden_size)
            final = tuple(s.detach().clone() for s in state)
        else:
            feeds = {"input": x.detach().contiguous().numpy()}
            feeds.update({n: s.detach().contiguous().numpy() for n, s in zip(names, state)})
            try:
                result = self.session().run(None, feeds)
            except Exception as error:  # onnxruntime's own types are not RuntimeErrors
                raise RuntimeError(f"onnxruntime: {' '.join(str(error).split())}") from error
            output, *final = (torch.from_numpy(r) for r in result)
        if not batched:
            output, final = output.squeeze(1), [s.squeeze(1) for s in final]
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (tuple(final) if len(final) == 2 else final[0])


class OnnxRuntimeLSTM(OnnxRuntimeMixin, nn.LSTM):
    """torch.nn.LSTM exported to ONNX (an LSTM operator) and run by onnxruntime on the CPU."""

    harness_family = "lstm"
    torch_class = nn.LSTM


class OnnxRuntimeGRU(OnnxRuntimeMixin, nn.GRU):
    """torch.nn.GRU exported to ONNX (a GRU operator) and run by onnxruntime on the CPU."""

    harness_family = "gru"
    torch_class = nn.GRU
