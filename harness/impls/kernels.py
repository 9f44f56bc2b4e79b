"""The matrix-multiply library behind the fast layers, chosen per machine by measurement, and
recorded.

Nearly all of a recurrent layer's time on a CPU is spent in GEMMs, and which library runs them
fastest depends on the machine. torch.mm on a CPU goes to aten's BLAS (MKL in the official
wheels), whose sgemm is tuned for Intel cores; torch's own LSTM runs on oneDNN. On an AMD EPYC with
AVX-512, one thread, MKL's sgemm reaches ~90-100 GFLOP/s on a recurrent step's (B, H) x (H, 4H)
product and oneDNN's ~110 (the same product through torch.ops.mkldnn._linear_pointwise with a
prepacked weight); elsewhere the order can be the other way round, and at one row (B=1) it is
the other way round inside a recurrent loop here. So the fast layers do not assume: the first time
a layer meets a (device, dtype, thread count, shape class) it times the libraries that can run it
on a short recurrence of that class's step GEMM and keeps the fastest, for the rest of the process.

Three backends, one interface (every product is ``x @ W^T`` with W stored as torch stores weights,
(out_features, in_features)):

- ``aten``: torch.mm / addmm, i.e. whatever BLAS torch was built with on the CPU (MKL, OpenBLAS),
  cuBLAS on CUDA. Works for every device and dtype; the only choice off a CPU or off float32.
- ``onednn``: torch.ops.mkldnn._linear_pointwise with weights prepacked once per forward call by
  torch.ops.mkldnn._reorder_linear_weight (oneDNN's blocked layout for the call's batch size); its
  ``.binary`` overload adds the step's input projection inside the GEMM. CPU float32 only, and
  only when torch was built with oneDNN and torch.backends.mkldnn is enabled.
- ``native``: native.c's small-batch product, compiled for this CPU (native.py): W read as it is
  stored (no packing), streamed once per step and row. A candidate up to NATIVE_MAX_ROWS rows,
  where a step is (nearly) a matrix-vector product, memory-bound: 55-64 us for a 512 x 2048 W
  here against 92 for MKL's sgemm and 105 for oneDNN's inner product. CPU float32 only.

``kernel_path`` reports the CPU capability, the thread count and, for a fast layer, the backend its
last forward used and why, so that a timing record can say what it timed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from harness.impls import native

AUTO = "auto"
BACKENDS = ("aten", "onednn", "native")
# oneDNN is chosen over aten when its recurrence is at least 3% faster: within that, a layer's
# own gate maths between steps has measured slower after oneDNN's step than after aten's
# (T=100, B=1, H=512 LSTM: 13.2 ms against 12.1 where the chain of measure() timed the two
# 99.8 and 99.3 us).
MARGIN = 0.97
NATIVE_MAX_ROWS = 4  # the compiled product streams W^T once per row: a candidate up to 4
# At most this many multiply-adds per product (shape classes: the conformance cases) run on aten,
# unmeasured: ~1 us on any backend, aten's call the cheapest (oneDNN packs W per call, ~270 us);
# measuring cost 20-70 ms per class and chose by noise between aten and the compiled product.
TINY_PRODUCT = 2**14
ENV_VAR = "SEQ_HARNESS_GEMM"  # auto (default), aten, onednn or native: every fast layer's default


class AtenGemm:
    """torch.mm / addmm: the BLAS torch was built with (MKL or OpenBLAS on a CPU, cuBLAS on CUDA).
    A "packed" weight is a transposed view: (in, out), no copy."""

    name = "aten"

    def pack(self, weight: Tensor, rows: int) -> Tensor:
        """W (out, in) for x @ W^T with x of about ``rows`` rows."""
        return weight.t()

    def linear(self, x: Tensor, packed: Tensor, bias: Tensor | None = None) -> Tensor:
        """x (M, in) @ W^T + bias: a new (M, out) tensor."""
        return torch.mm(x, packed) if bias is None else torch.addmm(bias, x, packed)

    def linear_add(self, x: Tensor, packed: Tensor, into: Tensor) -> Tensor:
        """into + x @ W^T, computed in place in ``into`` (M, out), which it returns."""
        return into.addmm_(x, packed)

    def weight_grad(self, grad: Tensor, x: Tensor) -> Tensor:
        """grad (M, out)^T @ x (M, in): the (out, in) gradient of W summed over M rows.

        aten's on both backends: a reduction over M = T*B rows needs both operands transposed,
        which BLAS reads in place, while oneDNN's inner product first copies its transposed
        input (measured slower in the loop at the standard shape)."""
        return torch.mm(grad.t(), x)


class OneDnnGemm(AtenGemm):
    """oneDNN inner products with prepacked weights (CPU, float32). Results are new tensors."""

    name = "onednn"

    def pack(self, weight: Tensor, rows: int) -> Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), max(rows, 1))

    def linear(self, x: Tensor, packed: Tensor, bias: Tensor | None = None) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    def linear_add(self, x: Tensor, packed: Tensor, into: Tensor) -> Tensor:
        # One oneDNN call: the GEMM with a binary post-op; a new tensor, ``into`` is not written.
        return torch.ops.mkldnn._linear_pointwise.binary(x, into, packed, None, "add")


class NativeGemm(AtenGemm):
    """native.c's small-batch product (CPU float32): dot products of W's rows when W is
    contiguous, rows of W^T when its transpose is (the backward pass's W_hh.t()); no copy.
    Results are new tensors, or ``into`` itself."""

    name = "native"

    def pack(self, weight: Tensor, rows: int) -> Tensor:
        if weight.is_contiguous() or weight.t().is_contiguous():
            return weight  # W, or a transposed view of a contiguous W: read as it is
        return weight.contiguous()

    def linear(self, x: Tensor, packed: Tensor, bias: Tensor | None = None) -> Tensor:
        out = x.new_empty(x.shape[0], packed.shape[0])
        return native.loaded().linear_add(packed, x.contiguous(), bias, out)

    def linear_add(self, x: Tensor, packed: Tensor, into: Tensor) -> Tensor:
        if not into.is_contiguous():
            return super().linear_add(x, packed.t(), into)
        return native.loaded().linear_add(packed, x.contiguous(), into, into)


GEMMS: dict[str, AtenGemm] = {"aten": AtenGemm(), "onednn": OneDnnGemm(), "native": NativeGemm()}


@dataclass(frozen=True)
class Decision:
    """Which backend runs one class of recurrent GEMM, and why."""

    backend: str
    reason: str
    key: tuple = ()  # (device, dtype, threads, rows, in, out, candidates, uses), sizes as 2^k
    timings_us: dict[str, float] = field(default_factory=dict)  # per step, the fastest round

    def as_record(self) -> dict:
        record = asdict(self)
        record["key"] = [str(part) for part in self.key]
        return record


# The one piece of process-wide mutable state: the decision for each key, measured on first use
# and reused until the process ends. Reading or filling it is all this module does with it.
_DECISIONS: dict[tuple, Decision] = {}


def onednn_usable() -> str | None:
    """None when oneDNN's fp32 inner product can run here, else why not."""
    if not torch.backends.mkldnn.is_available():
        return "torch was built without oneDNN"
    if not torch.backends.mkldnn.enabled:
        return "torch.backends.mkldnn is disabled"
    if not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return "torch.ops.mkldnn._linear_pointwise is missing from this torch"
    return None


def shape_class(size: int) -> int:
    """A dimension rounded up to a power of two: shapes in one class share a decision."""
    return 1 << max(0, math.ceil(math.log2(max(size, 1))))


def requested(name: str | None = None) -> str:
    """The backend asked for: ``name`` unless it is None or auto, else $SEQ_HARNESS_GEMM, else
    auto."""
    from_env = name in (None, AUTO)
    value = (os.environ.get(ENV_VAR) or AUTO) if from_env else name
    if value not in (AUTO, *BACKENDS):
        source = f"{ENV_VAR}={value!r}" if from_env else repr(value)
        raise ValueError(f"unknown GEMM backend {source}; valid: {AUTO}, {', '.join(BACKENDS)}")
    return value


def unusable(name: str, like: Tensor) -> str | None:
    """None when backend ``name`` can run products on ``like``'s device and dtype, else why not."""
    if name == "aten":
        return None
    if like.device.type != "cpu":
        return f"device {like.device.type}: aten's matmul is the only path"
    if like.dtype != torch.float32:
        return f"dtype {like.dtype}: {name}'s path here is float32 only"
    if name == "onednn":
        return onednn_usable()
    found, why = native.kernels(like)
    return None if found is not None else why


def decide(like: Tensor, rows: int, inner: int, outer: int, *, uses: int = 1,
           want: str | None = None) -> Decision:
    """The backend for x (rows, inner) @ W^T (inner -> outer) products on ``like``'s device and
    dtype, ``uses`` products per packing of W (one forward call's): forced by ``want`` /
    $SEQ_HARNESS_GEMM, ruled by capability, or measured once among aten, oneDNN and (up to
    NATIVE_MAX_ROWS rows) the compiled product."""
    wanted = requested(want)
    if wanted == "aten":
        return Decision("aten", "requested")
    why_not = {name: unusable(name, like) for name in BACKENDS[1:]}
    if wanted != AUTO:
        if why_not[wanted] is not None:
            raise ValueError(f"GEMM backend {wanted!r} was requested but cannot run: "
                             f"{why_not[wanted]}")
        return Decision(wanted, "requested")
    if rows > NATIVE_MAX_ROWS and why_not["native"] is None:
        why_not["native"] = f"{rows} rows: the compiled product is for up to {NATIVE_MAX_ROWS}"
    candidates = ("aten", *(name for name, why in why_not.items() if why is None))
    if len(candidates) == 1:
        return Decision("aten", "; ".join(dict.fromkeys(why_not.values())))
    if shape_class(rows) * shape_class(inner) * shape_class(outer) <= TINY_PRODUCT:
        return Decision("aten", f"not measured: ({rows}x{inner}) @ ({inner}x{outer}) is tiny")
    key = (like.device.type, str(like.dtype), torch.get_num_threads(),
           shape_class(rows), shape_class(inner), shape_class(outer), candidates,
           shape_class(uses))
    decision = _DECISIONS.get(key)
    if decision is None:
        with torch.no_grad():
            decision = _DECISIONS[key] = measure(key)
    return decision


def measure(key: tuple, *, budget_s: float = 0.12, rounds: tuple[int, int] = (3, 25)
            ) -> Decision:
    """Time a recurrence of the key's shape on each candidate backend (the key's candidates),
    interleaved round by round (at least rounds[0], at most rounds[1], while within
    ``budget_s``), each ranked by its fastest round (a burst of someone else's work slows some
    rounds, never speeds one up; medians of first-use measurements at B=1 picked the slower
    backend in two bench workers of three). oneDNN wins over aten only when below MARGIN times
    its time. Each round packs the weight too, a product charged its share of that (the key's
    last part: products per packing): oneDNN's reorder of a 2048 x 512 weight costs ~0.4-2.4
    ms, up to half of a T=100 LSTM's projection at B=1. A round is ~2 ms of steps, or one step
    when a product takes longer (a 1280-row input projection: ~26 ms). A round chains 1-32
    steps as a fast layer runs them: ``linear_add`` of the previous step's output into this
    step's input projection, then an elementwise op. A GEMM timed alone ranks the backends
    otherwise: at B=1 oneDNN's inner product is faster alone, ~15 us a step slower in the loop."""
    _device, _dtype, _threads, rows, inner, outer, candidates, uses = key
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(outer, inner, generator=generator) / math.sqrt(inner)
    started = time.perf_counter()
    torch.mm(torch.randn(rows, inner), weight.t())
    single = time.perf_counter() - started
    steps = max(1, min(32, int(2e-3 / max(single, 1e-7))))  # ~2 ms of steps per round
    projections = torch.randn(steps, rows, outer, generator=generator)  # x_t W_ih^T per step
    h0 = torch.zeros(rows, inner)

    def chain(gemm: AtenGemm, packed: Tensor) -> None:
        h = h0
        for step in range(steps):
            # aten and native add in place: each round adds to the same inputs (|h| <= 1, so they
            # grow by O(1) a round), no copy that a layer would not make
            out = gemm.linear_add(h, packed, projections[step])  # (rows, outer)
            h = out[:, :inner].sigmoid() if outer >= inner else h0  # the next step's state

    for name in candidates:  # warm-up: oneDNN creates its kernel for the shape here
        chain(GEMMS[name], GEMMS[name].pack(weight, rows))
    per_step: dict[str, list[float]] = {name: [] for name in candidates}
    started = time.perf_counter()
    while len(per_step["aten"]) < rounds[1] and (
            len(per_step["aten"]) < rounds[0] or time.perf_counter() - started < budget_s):
        for name in candidates:
            begin = time.perf_counter()
            packed = GEMMS[name].pack(weight, rows)
            packing = time.perf_counter() - begin
            chain(GEMMS[name], packed)
            per_step[name].append((time.perf_counter() - begin - packing) / steps
                                  + packing / uses)
    fastest = {name: min(times) * 1e6 for name, times in per_step.items()}
    best = min(fastest, key=lambda name: fastest[name] / (MARGIN if name == "onednn" else 1))
    others = ", ".join(f"{name} {fastest[name]:.1f} us" for name in fastest if name != best)
    reason = (f"measured: {best} {fastest[best]:.1f} us vs {others} per recurrent step, "
              f"({rows}x{inner}) @ ({inner}x{outer})")
    return Decision(best, reason, key, {k: round(v, 2) for k, v in fastest.items()})


def kernel_path(module: nn.Module | None = None) -> dict:
    """What runs the matrix products: torch's CPU capability and threads, and for a fast layer
    the GEMM backend its last forward chose, with the reason (None before its first forward).
    Without a module: every decision this process has measured so far."""
    path = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "mkl": torch.backends.mkl.is_available(),
        "onednn": onednn_usable() or "usable",
    }
    if module is None:
        path["decisions"] = [d.as_record() for d in _DECISIONS.values()]
        return path
    decision = getattr(module, "last_gemm", None)
    if not hasattr(module, "last_gemm"):
        path.update(gemm_backend=None, reason=f"{type(module).__name__} chooses its own kernels")
    elif decision is None:
        path.update(gemm_backend=None, reason="no forward has run yet")
    else:
        path.update(gemm_backend=decision.backend, reason=decision.reason,
                    decision=decision.as_record())
        path["gate_kernel"] = getattr(module, "last_gate_kernel", None)
        projection = getattr(module, "last_projection_gemm", None)
        if projection is not None:  # the hoisted input projection, decided on its own shape
            path.update(projection_backend=projection.backend,
                        projection_reason=projection.reason)
    return path
