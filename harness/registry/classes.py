"""A class or an op that is not packaged: ``--impl-class MODULE:CLASS`` or ``--impl-fn
MODULE:FUNCTION`` (the same list: either takes either), with ``[--family FAMILY]``.

The object is imported (the current directory is importable, as with ``python -m``), described
by an ImplSpec from what it declares, and tried once on a tiny probe case — a class built and
loaded with the reference weights, an op's signature bound to its family's call — so that a
malformed path, a module that does not import, an object of another family, or one that does
not build with or take the contract's arguments is one line before anything runs. An op is not
called here: one that raises on some cases is under test, and those cases are failed checks.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from harness.core.case import Case
from harness.core.families import family, family_names
from harness.core.op_spec import spec_from_function
from harness.core.spec import ImplSpec, spec_from_class
from harness.core.subject import reference_weights
from harness.core.text import one_line


def split_class_path(path: str) -> tuple[str, str]:
    """'pkg.mod:Cls' -> ('pkg.mod', 'Cls'); a ValueError for anything else."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise ValueError(
            f"--impl-class {path!r} is malformed; expected MODULE:CLASS, e.g. mypkg.rnn:MyLSTM"
        )
    return module_name, attr


def resolve_class(path: str) -> type:
    """Import MODULE:CLASS. The current directory is importable, as with ``python -m``."""
    module_name, attr = split_class_path(path)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ValueError(
            f"--impl-class {path!r}: module {module_name!r} does not import ({one_line(error)})"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--impl-class {path!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def spec_for_class_path(path: str, family_name: str | None) -> ImplSpec:
    """The registry entry for ``--impl-class MODULE:CLASS [--family FAMILY]``, checked to build.

    The family is ``--family`` or the class's own ``harness_family``. Raises ValueError/TypeError
    with one line naming what is wrong: a malformed path, a module that does not import, no
    family (or a --family that differs from the declared one), something that is not an
    nn.Module class, or a class that does not build with torch's constructor arguments.
    """
    split_class_path(path)
    if family_name is not None:
        try:
            family(family_name)
        except ValueError as error:
            raise ValueError(f"--family: {error}") from None
    cls = resolve_class(path)
    if not isinstance(cls, type) and callable(cls):
        return spec_for_function(path, cls, family_name)
    if family_name is None and getattr(cls, "harness_family", None) is None:
        raise ValueError(
            f"--impl-class {path!r} needs --family (or a harness_family attribute on the "
            f"class); valid: {', '.join(family_names())}"
        )
    try:
        spec = spec_from_class(cls, family_name=family_name, origin=path)
    except (TypeError, ValueError) as error:
        raise type(error)(f"--impl-class {path!r}: {error}") from None
    family_name = spec.family
    probe = spec.capabilities.adapt(spec.family_def.adapt(
        Case(seq_len=2, batch=1, input_size=3, hidden_size=4)))
    try:
        module = spec.build(probe)
    except Exception as error:
        raise ValueError(
            f"--impl-class {path!r} does not build with torch's constructor arguments "
            f"{spec.constructor_kwargs(probe)} ({one_line(error)})"
        ) from None
    try:  # a class of another family (a GRU run as --family lstm) fails here, once
        spec.load_weights(module, reference_weights(probe, spec.family_def))
    except Exception as error:
        raise ValueError(
            f"--impl-class {path!r} does not take family {family_name}'s weights "
            f"({one_line(error)}); is --family {family_name} its family?"
        ) from None
    return spec


def spec_for_function(path: str, fn, family_name: str | None) -> ImplSpec:
    """The registry entry of an op (``--impl-fn MODULE:FUNCTION``), called once on a probe."""
    from harness.core.op_case import OpCase
    from harness.core.op_subject import OpSubject

    if family_name is None and getattr(fn, "harness_family", None) is None:
        ops = [name for name in family_names() if family(name).kind == "op"]
        raise ValueError(f"--impl-fn {path!r} needs --family (or a harness_family attribute on "
                         f"the function); valid: {', '.join(ops)}")
    try:
        spec = spec_from_function(fn, family_name=family_name, origin=path)
    except (TypeError, ValueError) as error:
        raise type(error)(f"--impl-fn {path!r}: {error}") from None
    if spec.family_def.kind != "op":
        raise TypeError(f"--impl-fn {path!r} is not an nn.Module class: family {spec.family} "
                        "checks classes; a function is checked against an op family")
    # The signature is checked by binding the family's call to it, not by calling: an op that
    # takes the arguments but raises on some case (a kernel for T a multiple of 16 only, say)
    # is an implementation under test, whose every raising case is a failed check.
    probe = OpSubject(spec, OpCase(seq_len=3, heads=1, key_dim=2, value_dim=2))
    inputs = probe.inputs()
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: its calls say what is wrong
        return spec
    try:
        signature.bind(inputs.q, inputs.k, inputs.v, *inputs.gates, output_final_state=True)
    except TypeError as error:
        raise ValueError(f"--impl-fn {path!r} does not take family {spec.family}'s "
                         f"arguments (q, k, v, {', '.join(spec.family_def.gates)}, "
                         f"output_final_state=...): {one_line(error)}") from None
    return spec
