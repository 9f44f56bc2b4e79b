"""The fast layers' compiled kernels (native.c): built with the machine's C compiler at first use,
loaded with ctypes, and used only where they can run.

A Python loop pays one operator dispatch per elementwise operation per step: ~27 us a step for
an LSTM's eight at one row (B=1), a quarter of torch's whole step, and six passes over the gates
at B=64. And at one row a step's product is a matrix-vector product, which MKL's sgemm runs at
~45 GB/s from L3 here (~93 us for an LSTM's 4 MB W_hh, 93% of torch's whole step). native.c
fuses each family's gate maths into one call, has a small-batch product that streams W as torch
stores it (55-64 us for that W_hh), and runs a block of LSTM steps in one call; it is plain C,
no torch headers, so building it takes well under a second. It is compiled with
-march=native for the CPU it runs on, and cached per (source, compiler, flags, CPU) under
$SEQ_HARNESS_CACHE (default ~/.cache/seq-harness).

Where there is no C compiler, or the build fails, or $SEQ_HARNESS_NATIVE=0, ``kernels()`` says
why and the fast layers run their torch-operator path: the same maths, slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

ENV_VAR = "SEQ_HARNESS_NATIVE"  # 0: never use the compiled kernels
CACHE_VAR = "SEQ_HARNESS_CACHE"
# The compiled loops run on one thread. With more torch threads, a step's gate maths above this
# many elements stays in torch's operators, which use them all (fast.py, gate_kernel "auto").
SERIAL_MAX = 16384
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fopenmp-simd",
         "-shared", "-fPIC")
POINTER, LONG = ctypes.c_void_p, ctypes.c_long
SIGNATURES = {  # function -> argument types (native.c)
    "sh_linear_add": [POINTER, POINTER, POINTER, LONG, POINTER, LONG, LONG, LONG],
    "sh_lstm_cell": [POINTER, POINTER, POINTER, POINTER, LONG, LONG],
    "sh_gru_cell": [POINTER, POINTER, POINTER, POINTER, LONG, LONG],
    "sh_rnn_act": [POINTER, POINTER, LONG, ctypes.c_int],
    "sh_dot_add": [POINTER, POINTER, POINTER, LONG, POINTER, LONG, LONG, LONG],
    "sh_lstm_cell_backward": [POINTER] * 7 + [LONG, LONG],
    "sh_lstm_steps": [POINTER, POINTER, LONG, POINTER, LONG, POINTER, LONG, LONG, LONG,
                      ctypes.c_int, LONG, LONG],
}


class NativeUnavailable(RuntimeError):
    """The compiled kernels cannot be used here; the message says why."""


def compiler() -> str:
    """The C compiler: $CC, else cc, gcc or clang on PATH."""
    found = os.environ.get("CC") or next(
        (path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)
    if not found:
        raise NativeUnavailable("no C compiler: set CC or install cc, gcc or clang")
    return found


def cpu_identity() -> str:
    """What -march=native depends on: the machine and, on Linux, the CPU's model and flags."""
    identity = [platform.machine(), platform.processor()]
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    identity += [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return "\n".join(identity)


def source() -> bytes:
    """native.c as shipped with the package."""
    return resources.files("harness.impls").joinpath("native.c").read_bytes()


def build(code: bytes | None = None) -> Path:
    """The shared library for this source (``code``, default native.c), compiler, flags and CPU:
    from the cache, or compiled into it (to a temporary name, then renamed, so concurrent
    processes never load half a file)."""
    code = source() if code is None else code
    cc = compiler()
    digest = hashlib.sha256(b"\0".join(
        [code, cc.encode(), " ".join(FLAGS).encode(), cpu_identity().encode()])).hexdigest()
    folder = Path(os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "seq-harness")
    target = folder / f"native-{digest[:16]}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        src, out = Path(scratch) / "native.c", Path(scratch) / "native.so"
        src.write_bytes(code)
        try:
            done = subprocess.run([cc, *FLAGS, str(src), "-o", str(out)], capture_output=True,
                                  text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise NativeUnavailable(f"{cc} could not run: {error}") from error
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
            raise NativeUnavailable(f"{cc} failed (exit {done.returncode}): {first}")
        os.replace(out, target)
    return target


def ptr(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


class Kernels:
    """native.c's functions on torch tensors: float32, CPU, each (rows, columns) operand
    contiguous. Callers guarantee that; the dispatch cost per call is the point."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"{Path(compiler()).name} {' '.join(FLAGS[:5])}"
        library = ctypes.CDLL(str(path))
        for name, argtypes in SIGNATURES.items():
            getattr(library, name).argtypes = argtypes
            getattr(library, name).restype = None
        self.library = library

    def linear_add(self, w: Tensor, x: Tensor, add: Tensor | None, y: Tensor) -> Tensor:
        """y (rows, n) = add + x (rows, k) @ w^T for w (n, k) contiguous or the transpose of a
        contiguous (k, n); add (rows, n), a bias (n,) or None; y (rows, n), may be add."""
        rows, k = x.shape
        stride = 0 if add is None or add.dim() == 1 else add.shape[1]
        kernel = self.library.sh_dot_add if w.is_contiguous() else self.library.sh_linear_add
        kernel(ptr(w), ptr(x), ptr(add), stride, ptr(y), rows, k, w.shape[0])
        return y

    def lstm_cell(self, gates: Tensor, c_prev: Tensor, c_out: Tensor, h_out: Tensor) -> None:
        """gates (B, 4H) pre-activations -> sigmoid form; C = -2c: c_prev -> c_out; h_out."""
        self.library.sh_lstm_cell(ptr(gates), ptr(c_prev), ptr(c_out), ptr(h_out),
                                  gates.shape[0], c_out.shape[-1])

    def lstm_steps(self, w: Tensor, xw: Tensor, low: int, h_buf: Tensor, c_buf: Tensor,
                   first: int, steps: int, reverse: bool) -> None:
        """``steps`` LSTM steps from t = ``first`` (down when ``reverse``): products with w
        (4H, H) contiguous into xw (rows t - low, B, 4H), gate maths, states by slot in h_buf
        and c_buf (rows, B, H) as loop.Run keeps them (native.c sh_lstm_steps)."""
        self.library.sh_lstm_steps(ptr(w), ptr(xw), low, ptr(h_buf), h_buf.shape[0],
                                   ptr(c_buf), c_buf.shape[0], first, steps, int(reverse),
                                   xw.shape[1], h_buf.shape[2])

    def lstm_cell_backward(self, gates: Tensor, c_prev: Tensor, c_now: Tensor, d_out: Tensor,
                           d_h: Tensor, d_c: Tensor, dz: Tensor) -> None:
        """One step backward (no mask, no projection): dz (B, 4H) written, d_c (B, H) updated
        in place to the previous step's; the others (B, H) or (B, 4H) are read."""
        self.library.sh_lstm_cell_backward(ptr(gates), ptr(c_prev), ptr(c_now), ptr(d_out),
                                           ptr(d_h), ptr(d_c), ptr(dz), gates.shape[0],
                                           d_c.shape[-1])

    def gru_cell(self, gx: Tensor, hg: Tensor, h_prev: Tensor, h_out: Tensor) -> None:
        """gx (B, 3H) input projection -> [r, z, n]; hg (B, 3H) the hidden product; h_out."""
        self.library.sh_gru_cell(ptr(gx), ptr(hg), ptr(h_prev), ptr(h_out), gx.shape[0],
                                 h_out.shape[-1])

    def rnn_act(self, pre: Tensor, out: Tensor, relu: bool) -> None:
        """out = tanh(pre) or relu(pre), same shapes."""
        self.library.sh_rnn_act(ptr(pre), ptr(out), pre.numel(), int(relu))


@functools.cache  # per process: built (or found unusable) once
def loaded() -> Kernels | str:
    """The kernels, or why they cannot be built or loaded here."""
    try:
        return Kernels(build())
    except (NativeUnavailable, OSError) as error:
        return f"compiled kernels unavailable: {error}"


def kernels(like: Tensor) -> tuple[Kernels | None, str]:
    """(the kernels, how they were built) for tensors like ``like``, or (None, why not)."""
    if like.device.type != "cpu" or like.dtype != torch.float32:
        return None, f"{like.device.type} {like.dtype}: the compiled kernels are CPU float32"
    if os.environ.get(ENV_VAR, "1") == "0":
        return None, f"{ENV_VAR}=0"
    found = loaded()
    if isinstance(found, str):
        return None, found
    return found, f"compiled ({found.description})"
