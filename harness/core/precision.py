"""Float32 products on CUDA: IEEE float32 or TF32, one process-wide setting, recorded per run.

On Ampere and later GPUs torch runs cuDNN's RNNs in TF32 by default
(``torch.backends.cudnn.allow_tf32``): 10-bit mantissas in the products, ~1e-3 from float32,
twenty times the float32 tolerance of the suites. A float32 check would then fail torch's own
modules, and a float32 timing would time other maths than the checks verified. The harness runs
IEEE float32 unless asked for TF32 (``--tf32 on``: how far off, and how much faster, torch's
default is), and writes which into run.json. The CPU is unaffected either way.
"""

from __future__ import annotations

TF32_MODES = ("off", "on")


def set_tf32(mode: str) -> None:
    """TF32 for cuDNN and for matmul on CUDA ("on"), or neither ("off")."""
    if mode not in TF32_MODES:
        raise ValueError(f"tf32 {mode!r} is invalid; expected one of {', '.join(TF32_MODES)}")
    import torch  # here: the option's modes are read where torch is not imported

    allowed = mode == "on"
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def tf32_mode() -> str:
    """"on" when either cuDNN or matmul may use TF32 in this process, else "off"."""
    import torch

    allowed = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return "on" if allowed else "off"
