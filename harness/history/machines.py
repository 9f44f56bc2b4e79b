"""Which machine a run came from, as the history sees it: its hardware, not its hostname.

CI runners get a new hostname every run, and a VM keeps its name when moved to another CPU. So a
machine is the fingerprint's hardware fields (harness.core.machine: CPU model and its
family/model/stepping, the ISA level torch dispatches to, arch, cores, GPU and its compute
capability), plus the name the user gives with ``--machine`` (to tell apart two boxes of identical
hardware: a name never merges two different CPUs). Memory size and torch's BLAS/oneDNN builds
are left out: they change with a VM's size or a torch upgrade, which the history should show as a
step in a machine's series (the run records its torch), not as a new machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.core.machine import base_label
from harness.records import RunInfo

HARDWARE_FIELDS = ("cpu", "cpu_id", "isa", "arch", "cores", "gpu", "gpu_capability")


@dataclass(frozen=True)
class MachineIdentity:
    """hardware: the fields that identify it; name: the user's name ('' for none);
    label: how tables name it (the name, else the CPU with its ISA level or the GPU)."""

    hardware: Mapping[str, Any]
    name: str
    label: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name != self.name.strip():
            raise ValueError(f"--machine {self.name!r} is invalid; expected a name without "
                             "leading or trailing spaces")

    @property
    def digest(self) -> str:
        """A stable key: the same hardware and name give the same digest on any platform."""
        text = json.dumps({"hardware": dict(self.hardware), "name": self.name}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def hardware_of(info: RunInfo) -> dict[str, Any]:
    """The identifying fields of a run's fingerprint; a run older than fingerprints has only its
    processor name and CUDA device (it stays a machine of its own)."""
    found = {k: info.fingerprint[k] for k in HARDWARE_FIELDS if k in info.fingerprint}
    if not found:
        found = {"cpu": info.processor}
        if info.cuda:
            found["gpu"] = info.cuda
    return found


def identify(info: RunInfo, *, name: str | None = None) -> MachineIdentity:
    """The machine of a run (``name``: the user's ``--machine``)."""
    name = name or ""
    label = name or base_label(info.fingerprint, info.processor, info.cuda)
    return MachineIdentity(hardware=hardware_of(info), name=name, label=label)
