"""What identifies a machine: enough to tell apart two machines whose timings differ.

A processor name alone is not: cloud CPUs report "AMD EPYC" for an AVX2 Zen 2 and an AVX-512
Zen 5 alike, and their figures differ by 2x. The fingerprint holds the CPU model and its
family/model/stepping, the instruction set torch dispatches to, cores and memory, torch's BLAS and
oneDNN builds and, on CUDA, the device and its compute capability. Timings are only compared (by
the gate) or merged (by the report) within one fingerprint; reports name machines by what
differs between them.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

Fingerprint = dict[str, object]

# What each fingerprint field is called when two machines differ in it.
NAMES = {
    "cpu": "CPU", "cpu_id": "CPU family/model/stepping", "isa": "ISA level", "arch": "arch",
    "cores": "cores", "memory_gib": "memory GiB", "blas": "BLAS", "onednn": "oneDNN",
    "gpu": "GPU", "gpu_capability": "GPU capability",
}


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def memory_gib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20)
    except (OSError, ValueError, IndexError):
        pass
    return None


def torch_builds() -> dict[str, str]:
    """The BLAS and oneDNN versions torch was built with, as torch.__config__ reports them."""
    import torch  # here: reading a fingerprint (reports, history) needs no torch

    shown = torch.__config__.show()
    found = {}
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", shown)
    if mkl:
        found["blas"] = f"MKL {mkl.group(1)}"
    else:
        blas = re.search(r"BLAS_INFO=(\w+)", shown)
        found["blas"] = blas.group(1) if blas else "unknown"
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([\w.]+)", shown)
    found["onednn"] = onednn.group(1) if onednn else "none"
    return found


def fingerprint() -> Fingerprint:
    """This machine's fingerprint (see the module docstring)."""
    import torch

    info = cpuinfo()
    ident = " ".join(info.get(k, "?") for k in ("vendor_id", "cpu family", "model", "stepping"))
    found: Fingerprint = {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": ident,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        **torch_builds(),
    }
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        found["gpu"] = torch.cuda.get_device_name(0)
        found["gpu_capability"] = f"{major}.{minor}"
    return found


def differences(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    """'ISA level: 'AVX2' vs 'AVX512'' for each field two fingerprints both have and differ in
    (a field only one of them records, from an older run, is not a difference)."""
    return [f"{NAMES.get(k, k)}: {a[k]!r} vs {b[k]!r}" for k in a
            if k in b and a[k] != b[k]]


def base_label(fp: Mapping[str, object], processor: str, cuda: str | None) -> str:
    """A machine's short name: the GPU, or the CPU with the ISA level torch dispatches to."""
    if cuda:
        return cuda
    isa = fp.get("isa")
    return f"{fp.get('cpu', processor)} ({isa})" if isa else str(fp.get("cpu", processor))


def labels(machines: Sequence[tuple[Mapping[str, object], str, str | None]]) -> list[str]:
    """A label per (fingerprint, processor, cuda): the short name, plus the fields that tell it
    apart from another machine of the same short name."""
    bases = [base_label(fp, processor, cuda) for fp, processor, cuda in machines]
    out = []
    for index, (fp, _, _) in enumerate(machines):
        twins = [machines[j][0] for j in range(len(machines))
                 if bases[j] == bases[index] and dict(machines[j][0]) != dict(fp)]
        differing = [k for k in fp if any(k in t and t[k] != fp[k] for t in twins)]
        extra = ", ".join(f"{NAMES.get(k, k)} {fp[k]}" for k in differing)
        out.append(f"{bases[index]} [{extra}]" if extra else bases[index])
    return out
