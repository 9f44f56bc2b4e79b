"""The built-in matrix-state ops as registry entries: for each family its reference loop, its
chunked form and, where the family has one, its quadratic parallel form (harness.ops)."""

from __future__ import annotations

import functools

from harness.core.op_spec import OpCapabilities
from harness.core.spec import ImplSpec
from harness.ops.gated_delta import gated_delta_chunk, gated_delta_recurrent
from harness.ops.mlstm import mlstm_chunk, mlstm_parallel, mlstm_recurrent
from harness.ops.scalar_decay import (
    scalar_decay_chunk,
    scalar_decay_parallel,
    scalar_decay_recurrent,
)

# A recurrent loop's backward keeps every step's state: up to 2^28 elements (1 GB in float32).
# A parallel form builds several T x T matrices per sequence and head: up to 2^24 elements each
# (T=2048 at B=1, H=4; at T=4096 it takes 3 s a call where the chunked form takes 20 ms).
DTYPES = frozenset({"float32", "float64", "bfloat16", "float16"})  # half types computed in float32
RECURRENT = OpCapabilities(form="recurrent", max_elements=2 ** 28, dtypes=DTYPES)
CHUNKED = OpCapabilities(chunk_sizes="any", form="chunk", dtypes=DTYPES)
PARALLEL = OpCapabilities(form="parallel", max_elements=2 ** 24, dtypes=DTYPES)

_op = functools.partial(ImplSpec, origin="builtin")

SCALAR_DECAY_RECURRENT = _op(
    name="scalar-decay-recurrent", family="scalar_decay", factory=scalar_decay_recurrent,
    capabilities=RECURRENT, description="the reference loop, one step at a time")
SCALAR_DECAY_CHUNK = _op(
    name="scalar-decay-chunk", family="scalar_decay", factory=scalar_decay_chunk,
    capabilities=CHUNKED, description="chunks of 64: intra-chunk products, the state carried")
SCALAR_DECAY_PARALLEL = _op(
    name="scalar-decay-parallel", family="scalar_decay", factory=scalar_decay_parallel,
    capabilities=PARALLEL, description="the quadratic form: a T x T decay-masked product")
GATED_DELTA_RECURRENT = _op(
    name="gated-delta-recurrent", family="gated_delta", factory=gated_delta_recurrent,
    capabilities=RECURRENT, description="the reference loop, one step at a time")
GATED_DELTA_CHUNK = _op(
    name="gated-delta-chunk", family="gated_delta", factory=gated_delta_chunk,
    capabilities=CHUNKED, description="chunks of 32, WY / UT form: a blocked inverse each")
MLSTM_RECURRENT = _op(
    name="mlstm-recurrent", family="mlstm", factory=mlstm_recurrent,
    capabilities=RECURRENT, description="the reference loop, one step at a time")
MLSTM_CHUNK = _op(
    name="mlstm-chunk", family="mlstm", factory=mlstm_chunk,
    capabilities=CHUNKED, description="chunks of 64, each stabilised by its own log weights")
MLSTM_PARALLEL = _op(
    name="mlstm-parallel", family="mlstm", factory=mlstm_parallel,
    capabilities=PARALLEL, description="the stabilised quadratic form: a T x T weight matrix")
