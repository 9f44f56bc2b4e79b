"""Public names a user imports to describe an implementation (``harness.spec.ImplSpec``,
``harness.spec.Capabilities``), kept where they were first published; they live in
harness.core.spec."""

from harness.core.spec import (
    Capabilities,
    ImplSpec,
    load_torch_state,
    load_with_method,
    spec_from_class,
)

__all__ = ["Capabilities", "ImplSpec", "load_torch_state", "load_with_method", "spec_from_class"]
