"""Unit tests of harness/spec.py: Capabilities, ImplSpec, weight loading and spec_from_class."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from harness.core.case import Case
from harness.core.contract import Inputs, call
from harness.core.families import load_families
from harness.core.spec import (
    NAME_PATTERN,
    Capabilities,
    ImplSpec,
    kebab,
    load_torch_state,
    load_with_method,
    spec_from_class,
)
from harness.impls.course_cell import ScratchRNN
from harness.impls.scratch import ScratchGRU
from tests import fixtures_impls

BASE = Case(seq_len=5, batch=3, input_size=3, hidden_size=7)
LSTM, GRU = load_families().by_name["lstm"], load_families().by_name["gru"]


@pytest.mark.parametrize(
    ("excluded", "case", "what"),
    [
        ({"packed": False}, BASE.with_(lengths=(5, 3, 1)), "variable-length"),
        ({"bidirectional": False}, BASE.with_(bidirectional=True), "bidirectional"),
        ({"multi_layer": False}, BASE.with_(num_layers=2), "num_layers"),
        ({"batch_first": False}, BASE.with_(batch_first=True), "batch_first"),
        ({"proj_size": False}, BASE.with_(proj_size=4), "proj_size"),
        ({"dropout": False}, BASE.with_(dropout=0.5), "dropout"),
        ({"unbatched": False}, BASE.with_(batch=None), "unbatched"),
        ({"no_bias": False}, BASE.with_(bias=False), "bias=False"),
        ({"dtypes": {"float32"}}, BASE.with_(dtype="float64"), "float64"),
        ({"devices": {"cpu"}}, BASE.with_(device="cuda"), "cuda"),
    ],
)
def test_why_not_names_each_excluded_feature(excluded, case, what):
    assert Capabilities().why_not(case, LSTM) is None
    why = Capabilities(**excluded).why_not(case, LSTM)
    assert why is not None
    assert why.startswith("not supported")
    assert what in why
    assert Capabilities(**excluded).why_not(BASE, LSTM) is None  # only that case is refused


def test_lengths_keyword_covers_variable_length_input():
    case = BASE.with_(lengths=(5, 3, 1))
    assert Capabilities(packed=False, lengths=True).why_not(case, LSTM) is None
    assert Capabilities(packed=False, lengths=False).why_not(case, LSTM) is not None


@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "gru"])
def test_proj_size_is_not_supported_outside_lstm(name):
    why = Capabilities().why_not(BASE.with_(proj_size=4), load_families().by_name[name])
    assert why is not None and why.startswith("not supported")
    assert "proj_size" in why and name in why


class _PaddedOnly(nn.Module):
    """Accepts padded input only; remembers what it was given."""

    def forward(self, x, hx=None):
        self.given = x
        if isinstance(x, PackedSequence):
            raise TypeError("PackedSequence input is not supported")
        return torch.zeros(*x.shape[:2], 7), torch.zeros(1, x.shape[1], 7)


def test_case_fed_packed_is_refused_without_packed_capability():
    case = BASE.with_(lengths=(5, 5, 5))  # full lengths: grids.varlen has such a case
    caps = Capabilities(packed=False)
    module = _PaddedOnly()
    inputs = Inputs(torch.zeros(5, 3, 3), torch.tensor(case.lengths))
    if caps.why_not(case, GRU) is None:  # claimed supported: it must then be fed padded input
        call(module, caps, case, inputs, has_cell=False)
        assert not isinstance(module.given, PackedSequence)


# Declarations -----------------------------------------------------------------------------------


def test_from_declaration_accepts_nothing_an_instance_or_a_mapping():
    assert Capabilities.from_declaration(None) == Capabilities()
    caps = Capabilities(packed=False)
    assert Capabilities.from_declaration(caps) is caps
    declared = Capabilities.from_declaration({"packed": False, "dtypes": ["float64"]})
    assert declared.packed is False
    assert declared.dtypes == frozenset({"float64"})
    assert declared.bidirectional is True  # the rest of the contract is still claimed


def test_from_declaration_names_unknown_keys():
    with pytest.raises(ValueError, match="bidirectionnal") as raised:
        Capabilities.from_declaration({"bidirectionnal": False})
    assert "bidirectional" in str(raised.value).split("valid:")[1]


@pytest.mark.parametrize("declared", [42, "packed", ["packed"], {"dtypes": "float32"}])
def test_from_declaration_refuses_wrong_types(declared):
    with pytest.raises(TypeError):
        Capabilities.from_declaration(declared)


def test_unknown_dtype_or_device_is_refused():
    with pytest.raises(ValueError, match="float8"):
        Capabilities(dtypes={"float8"})
    with pytest.raises(ValueError, match="tpu"):
        Capabilities(devices={"cpu", "tpu"})


# ImplSpec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MyLSTM", "my_lstm", "my lstm", "-lstm", "lstm-", "a--b", "", 3])
def test_impl_spec_refuses_bad_names(name):
    with pytest.raises(ValueError, match="lowercase-hyphen"):
        ImplSpec(name=name, family="lstm", factory=nn.LSTM)


def test_impl_spec_checks_family_and_factory():
    assert ImplSpec(name="my-lstm-2", family="lstm", factory=nn.LSTM).family_def is LSTM
    with pytest.raises(ValueError, match=r"lstn.*rnn_tanh"):
        ImplSpec(name="my-lstm", family="lstn", factory=nn.LSTM)
    with pytest.raises(TypeError, match="not callable"):
        ImplSpec(name="my-lstm", family="lstm", factory="torch.nn.LSTM")


def test_build_returns_a_module_in_the_case_mode():
    spec = ImplSpec(name="my-rnn", family="rnn_relu", factory=nn.RNN)
    module = spec.build(BASE.with_(training=True, num_layers=2))
    assert isinstance(module, nn.RNN)
    assert module.training and module.nonlinearity == "relu" and module.num_layers == 2
    with pytest.raises(TypeError, match=r"expected an nn.Module"):
        ImplSpec(name="bad", family="gru", factory=lambda **kw: object()).build(BASE)


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [("MyFastLSTM", "my-fast-lstm"), ("ScratchGRU", "scratch-gru"), ("LSTM", "lstm"),
     ("TorchLSTM", "torch-lstm"), ("LayerNormLSTMCell", "layer-norm-lstm-cell"),
     ("myRNN", "my-rnn")],
)
def test_kebab(class_name, expected):
    assert kebab(class_name) == expected


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True))
def test_kebab_always_gives_a_valid_name(class_name):
    assert NAME_PATTERN.match(kebab(class_name))


# Weights ----------------------------------------------------------------------------------------


def test_load_torch_state_copies_by_name():
    reference = nn.GRU(3, 5, num_layers=2, bidirectional=True)
    module = ScratchGRU(3, 5, num_layers=2, bidirectional=True)
    load_torch_state(module, reference.state_dict())
    for name, value in reference.state_dict().items():
        assert torch.equal(module.state_dict()[name], value)


def test_load_torch_state_names_absent_and_extra_parameters():
    state = nn.RNN(3, 5).state_dict()
    with pytest.raises(KeyError) as raised:
        load_torch_state(ScratchRNN(3, 5), state)
    message = str(raised.value)
    assert "weight_ih_l0" in message and "bias_hh_l0" in message  # absent
    assert "cells.0.input_to_hidden.weight" in message  # extra
    assert "load_reference_weights" in message


def test_load_torch_state_refuses_a_shape_mismatch():
    with pytest.raises(ValueError, match="weight_ih_l0"):
        load_torch_state(nn.GRU(4, 5), nn.GRU(3, 5).state_dict())


def test_spec_from_class_defaults():
    spec = spec_from_class(fixtures_impls.MyLSTM, family_name="lstm", origin="m:MyLSTM")
    assert spec.name == "my-lstm" and spec.family == "lstm" and spec.origin == "m:MyLSTM"
    assert spec.capabilities == Capabilities()
    assert spec.load_weights is load_torch_state
    assert spec.description == "torch's LSTM under another name."


def test_spec_from_class_honours_declarations():
    declared = spec_from_class(fixtures_impls.DeclaredGRU, family_name="gru")
    assert declared.capabilities.packed is False
    assert declared.capabilities.dtypes == frozenset({"float64"})
    assert declared.why_not(BASE) == "not supported: dtype float32"
    named = spec_from_class(fixtures_impls.ClashingLSTM, family_name="lstm", name="override")
    assert named.name == "override"
    assert spec_from_class(fixtures_impls.ClashingLSTM, family_name="lstm").name == "torch-lstm"


def test_spec_from_class_uses_load_reference_weights():
    spec = spec_from_class(fixtures_impls.AdapterRNN, family_name="rnn_tanh")
    assert spec.load_weights is load_with_method
    case = BASE.with_(num_layers=2)
    module, reference = spec.build(case), nn.RNN(**case.torch_kwargs())
    spec.load_weights(module, reference.state_dict())
    x = torch.randn(5, 3, 3)
    torch.testing.assert_close(module(x)[0], reference(x)[0], atol=1e-5, rtol=0)


def test_spec_from_class_refuses_non_modules():
    with pytest.raises(TypeError, match=r"not an nn.Module class"):
        spec_from_class(fixtures_impls.NotAModule, family_name="gru")
    with pytest.raises(TypeError, match=r"not an nn.Module class"):
        spec_from_class(nn.GRU(3, 4), family_name="gru")
