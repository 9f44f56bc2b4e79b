"""The built-in registry entries, each published through the ``seq_harness.impls`` entry-point
group exactly as a third party would publish its own."""

from __future__ import annotations

import functools
from dataclasses import replace

from torch import nn

from harness.core.spec import Capabilities, ImplSpec, load_with_method, spec_from_class
from harness.impls.compiled import CompiledGRU, CompiledLSTM
from harness.impls.course_cell import ScratchRNN
from harness.impls.cudagraph import CudaGraphGRU, CudaGraphLSTM
from harness.impls.fast import FastGRU, FastLSTM, FastRNN
from harness.impls.int8 import Int8GRU, Int8LSTM, int8_unavailable
from harness.impls.onnx_runtime import OnnxRuntimeGRU, OnnxRuntimeLSTM, onnx_unavailable
from harness.impls.packed import PackedGRU, PackedLSTM, PackedRNN
from harness.impls.scratch import ScratchGRU, ScratchLSTM
from harness.impls.script_lstm import ScriptLSTM

# The layers built on harness.core.layer also take padded input plus lengths=, so an empty
# sequence in a batch too.
FROM_SCRATCH = Capabilities(zero_length=True)
# The fast layers' backward pass is hand-written (one autograd node per call): not differentiable.
FAST = Capabilities(zero_length=True, double_backward=False)
# The packed recipe always takes padded 3-D input plus lengths.
PACKED_RECIPE = Capabilities(packed=False, lengths=True, unbatched=False)

SCRATCH_RNN = ImplSpec(
    name="scratch-rnn",
    family="rnn_tanh",
    factory=ScratchRNN,
    capabilities=FROM_SCRATCH,
    load_weights=load_with_method,
    description="the course's cell: Linear over [x_t, h_{t-1}], tanh, one step at a time",
    origin="builtin",
)
SCRATCH_LSTM = ImplSpec(
    name="scratch-lstm",
    family="lstm",
    factory=ScratchLSTM,
    capabilities=FROM_SCRATCH,
    description="LSTM cell from scratch, torch's [i, f, g, o] layout, one step at a time",
    origin="builtin",
)
SCRATCH_GRU = ImplSpec(
    name="scratch-gru",
    family="gru",
    factory=ScratchGRU,
    capabilities=FROM_SCRATCH,
    description="GRU cell from scratch, torch's [r, z, n] layout, one step at a time",
    origin="builtin",
)
TORCH_RNN_TANH = ImplSpec(
    name="torch-rnn-tanh", family="rnn_tanh", factory=nn.RNN,
    description="torch.nn.RNN(nonlinearity='tanh')", origin="builtin",
)
TORCH_RNN_RELU = ImplSpec(
    name="torch-rnn-relu", family="rnn_relu", factory=nn.RNN,
    description="torch.nn.RNN(nonlinearity='relu')", origin="builtin",
)
TORCH_LSTM = ImplSpec(
    name="torch-lstm", family="lstm", factory=nn.LSTM, description="torch.nn.LSTM",
    origin="builtin",
)
TORCH_GRU = ImplSpec(
    name="torch-gru", family="gru", factory=nn.GRU, description="torch.nn.GRU", origin="builtin",
)

_packed = functools.partial(ImplSpec, capabilities=PACKED_RECIPE, origin="builtin")
TORCH_RNN_TANH_PACKED = _packed(
    name="torch-rnn-tanh-packed", family="rnn_tanh", factory=PackedRNN,
    description="pad -> pack_padded_sequence -> nn.RNN(tanh) -> pad_packed_sequence",
)
TORCH_RNN_RELU_PACKED = _packed(
    name="torch-rnn-relu-packed", family="rnn_relu", factory=PackedRNN,
    description="pad -> pack_padded_sequence -> nn.RNN(relu) -> pad_packed_sequence",
)
TORCH_LSTM_PACKED = _packed(
    name="torch-lstm-packed", family="lstm", factory=PackedLSTM,
    description="pad -> pack_padded_sequence -> nn.LSTM -> pad_packed_sequence",
)
TORCH_GRU_PACKED = _packed(
    name="torch-gru-packed", family="gru", factory=PackedGRU,
    description="pad -> pack_padded_sequence -> nn.GRU -> pad_packed_sequence",
)

# Optimised from-scratch layers: the input projection hoisted out of the time loop, one W_hh
# matmul per step, preallocated outputs without autograd.
FAST_RNN = ImplSpec(
    name="fast-rnn", family="rnn_tanh", factory=FastRNN, capabilities=FAST,
    description="Elman RNN from scratch, input projection hoisted out of the loop (one GEMM)",
    origin="builtin",
)
FAST_LSTM = ImplSpec(
    name="fast-lstm", family="lstm", factory=FastLSTM, capabilities=FAST,
    description="LSTM from scratch, input projection hoisted out of the loop (one GEMM)",
    origin="builtin",
)
FAST_GRU = ImplSpec(
    name="fast-gru", family="gru", factory=FastGRU, capabilities=FAST,
    description="GRU from scratch, input projection hoisted out of the loop (one GEMM)",
    origin="builtin",
)

# CUDA graphs of the fast LSTM and GRU: inference forward on CUDA captured once and replayed as
# one launch. The entries claim only what is graphed — CUDA, padded fixed-length input, no
# dropout; the classes fall back to the eager fast layers for the rest (see cudagraph.py).
CUDA_GRAPHED = Capabilities(packed=False, lengths=False, dropout=False, devices={"cuda"})
FAST_LSTM_CUDAGRAPH = ImplSpec(
    name="fast-lstm-cudagraph", family="lstm", factory=CudaGraphLSTM, capabilities=CUDA_GRAPHED,
    description="fast-lstm with its forward captured as a CUDA graph and replayed (CUDA only)",
    origin="builtin",
)
FAST_GRU_CUDAGRAPH = ImplSpec(
    name="fast-gru-cudagraph", family="gru", factory=CudaGraphGRU, capabilities=CUDA_GRAPHED,
    description="fast-gru with its forward captured as a CUDA graph and replayed (CUDA only)",
    origin="builtin",
)


# Deployment variants: each a real way of shipping the torch reference, declaring on its class
# what it claims (harness_capabilities), how far from float it is (harness_tolerance), its
# family and how long its first calls may take; see the modules for the measurements.
def deployment(cls: type, name: str, description: str, availability=None) -> ImplSpec:
    spec = spec_from_class(cls, name=name, origin="builtin")
    return replace(spec, description=description, availability=availability)


TORCH_LSTM_INT8 = deployment(
    Int8LSTM, "torch-lstm-int8", "torch.ao dynamic int8 LSTM (from_float of the float weights)",
    int8_unavailable)
TORCH_GRU_INT8 = deployment(
    Int8GRU, "torch-gru-int8", "torch.ao dynamic int8 GRU (from_float of the float weights)",
    int8_unavailable)
COMPILED_LSTM = deployment(
    CompiledLSTM, "compiled-lstm",
    "torch.compile of an LSTM step (recurrent GEMM + gates), input projection hoisted")
COMPILED_GRU = deployment(
    CompiledGRU, "compiled-gru",
    "torch.compile of a GRU step (recurrent GEMM + gates), input projection hoisted")
SCRIPT_LSTM = deployment(
    ScriptLSTM, "script-lstm",
    "TorchScript LSTM in the style of PyTorch's fastrnns custom_lstms.py")
ONNXRUNTIME_LSTM = deployment(
    OnnxRuntimeLSTM, "onnxruntime-lstm",
    "torch.nn.LSTM exported with torch.onnx.export, run by onnxruntime (CPU)", onnx_unavailable)
ONNXRUNTIME_GRU = deployment(
    OnnxRuntimeGRU, "onnxruntime-gru",
    "torch.nn.GRU exported with torch.onnx.export, run by onnxruntime (CPU)", onnx_unavailable)
