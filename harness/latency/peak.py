"""This machine's matmul peak: the best float32 GFLOP/s over a sweep of GEMM sizes and backends.

"% peak" in the latency report divides an implementation's GFLOP/s by this figure, so it must be
what the machine can really do, not what one library does on one shape. torch.mm goes to the
BLAS torch was built with (MKL or OpenBLAS on the CPU); on some CPUs oneDNN's matmul (the
library behind nn.LSTM's fused CPU kernel) is twice as fast. Every worker process of a benchmark
times square GEMMs of a few sizes through every backend available here (cuBLAS on CUDA); the
peak is the fastest (backend, size) by its median over all processes, stated in the report with
the backend that reached it. A timing above 100% of it is flagged as suspect, never printed
plain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

SIZES = (256, 512, 1024)  # square GEMMs: (n x n) @ (n x n)
PEAK = "peak"  # the implementation name of peak records


def blas_name() -> str:
    """The BLAS torch.mm uses on the CPU."""
    return "MKL" if torch.backends.mkl.is_available() else "BLAS"


def backends(device: str) -> tuple[str, ...]:
    """The GEMM backends a peak is measured over on ``device``."""
    if device == "cuda":
        return ("cuBLAS",)
    found = [f"{blas_name()} (torch.mm)"]
    if torch.backends.mkldnn.is_available():
        found.append("oneDNN (mkldnn_linear)")
    return tuple(found)


@dataclass(frozen=True)
class Gemm:
    """One point of the sweep."""

    backend: str
    size: int
    device: str = "cpu"

    @property
    def flops(self) -> int:
        return 2 * self.size**3

    @property
    def id(self) -> str:
        return f"{self.backend.split()[0]}-{self.size}"

    def callable(self) -> Callable[[], object]:
        """The timed call: float32, inputs prepared outside it (oneDNN's in its own layout)."""
        generator = torch.Generator().manual_seed(self.size)
        a = torch.randn(self.size, self.size, generator=generator)
        b = torch.randn(self.size, self.size, generator=generator)
        if self.backend.startswith("oneDNN"):
            a_mkldnn, weight = a.to_mkldnn(), b.t().contiguous().to_mkldnn()  # linear: a @ b
            return lambda: torch._C._nn.mkldnn_linear(a_mkldnn, weight, None)
        device = torch.device(self.device)
        a, b = a.to(device), b.to(device)
        return lambda: torch.mm(a, b)


def sweep(device: str) -> list[Gemm]:
    return [Gemm(backend, size, device) for backend in backends(device) for size in SIZES]
