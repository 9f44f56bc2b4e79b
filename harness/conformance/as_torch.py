"""When torch itself breaks the CPU contract on a device: the failed check run again on torch.

torch's modules do not behave the same everywhere: on CUDA, cuDNN refuses a non-contiguous hx
and a backward pass in eval mode, both of which torch accepts on the CPU (whose behaviour is the
contract). An implementation that fails a check on such a device exactly as torch's own module
does there has not broken torch's contract: it behaves as torch does on that device. A Family
names the module torch runs on each such device (``Family.device_modules``); a check failed
there runs once more with that module in the implementation's place — same case, weights and
data — and when it fails the same way (the same exception type and message), the check's
outcome is *as torch*, reported apart from failures. torch's own registry entries therefore do
not fail their own contract on CUDA, and an implementation that differs from torch's behaviour
there in any other way still fails.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.conformance.checks import Check, NotSupported
from harness.core.case import Case
from harness.core.spec import Capabilities, ImplSpec
from harness.core.subject import Subject

PREFIX = "as torch on"  # how an as-torch outcome's message starts


def torch_on_device(spec: ImplSpec, case: Case) -> ImplSpec | None:
    """torch's own module on the case's device as a registry entry, where the family says it
    differs from the CPU contract there; None elsewhere (on the CPU, always)."""
    build = spec.family_def.device_modules.get(case.device)
    if build is None:
        return None
    return ImplSpec(name=f"torch-on-{case.device}", family=spec.family, factory=build,
                    capabilities=Capabilities(),
                    description=f"torch's {spec.family} module on {case.device}")


def same_failure(first: BaseException, second: BaseException) -> bool:
    """The same exception type with the same message: exactly what torch does."""
    return type(first) is type(second) and str(first) == str(second)


def as_torch(test: Callable[..., object], spec: ImplSpec, case: Case, failure: Exception,
             make_check: Callable[[ImplSpec], Check]) -> str | None:
    """The as-torch message when torch's own module on the case's device fails ``test`` the
    way the implementation did (``failure``); None when it passes, fails otherwise, or the
    device's torch is the contract itself."""
    torch_spec = torch_on_device(spec, case)
    if torch_spec is None or spec.factory is torch_spec.factory:
        return None if torch_spec is None else as_itself(torch_spec, case, failure)
    try:
        test(subject=Subject(torch_spec, case), check=make_check(torch_spec))
    except NotSupported:
        return None
    except Exception as torch_failure:
        if same_failure(failure, torch_failure):
            return f"{PREFIX} {case.device}: torch's own module fails this check there the same " \
                   f"way ({describe(failure)})"
        return None
    return None


def as_itself(torch_spec: ImplSpec, case: Case, failure: Exception) -> str:
    """An entry whose module is torch's own on this device: its failure is torch's behaviour."""
    return f"{PREFIX} {case.device}: this is torch's own module there ({describe(failure)})"


def describe(failure: Exception) -> str:
    text = " ".join(str(failure).split())
    return text if isinstance(failure, AssertionError) else f"{type(failure).__name__}: {text}"
