"""Unit tests of harness/checks.py: difference(), Tolerance and the measuring Check."""

from __future__ import annotations

import math

import pytest
import torch

from harness.conformance.checks import Check, CheckFailed, NotSupported, Tolerance, difference
from harness.core.case import Case
from harness.core.contract import Outputs

INF, NAN = math.inf, math.nan
TOL = Tolerance(1e-5)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize(
    ("actual", "expected"),
    [(NAN, 1.0), (1.0, NAN), (NAN, INF), (NAN, NAN), (INF, 1.0), (1.0, INF), (-INF, INF)],
)
def test_nan_or_a_different_inf_fails_whatever_the_tolerance(actual, expected):
    diff = difference(t(0.0, actual), t(0.0, expected), Tolerance(1e300, 1e300))
    assert diff.max_abs_error > 1e300
    assert not diff.ok
    assert diff.first_bad == (1,)


@pytest.mark.parametrize(("actual", "expected"), [(NAN, 1.0), (1.0, NAN), (NAN, NAN)])
def test_nan_is_an_infinite_error(actual, expected):
    assert difference(t(actual), t(expected), TOL).max_abs_error == INF


@pytest.mark.parametrize(("actual", "expected"), [(INF, 1.0), (1.0, -INF), (-INF, INF)])
def test_inf_against_another_value_is_an_infinite_error(actual, expected):
    assert difference(t(actual), t(expected), TOL).max_abs_error == INF


@pytest.mark.parametrize("value", [INF, -INF])
def test_the_same_inf_is_no_error(value):
    diff = difference(t(1.0, value), t(1.0, value), TOL)
    assert diff.max_abs_error == 0.0
    assert diff.ok and diff.first_bad is None


def test_atol_and_rtol_add_up():
    actual, expected = t(100.5, -100.5), t(100.0, -100.0)
    assert not difference(actual, expected, Tolerance(0.4)).ok
    assert not difference(actual, expected, Tolerance(0.0, 0.004)).ok
    assert difference(actual, expected, Tolerance(0.1, 0.004)).ok  # 0.1 + 0.004 * 100
    diff = difference(actual, expected, Tolerance(0.1, 0.003))
    assert diff.max_abs_error == pytest.approx(0.5)
    assert diff.worst_excess == pytest.approx(0.1)
    assert diff.first_bad == (0,)


def test_first_bad_is_a_full_index_and_dtypes_mix():
    expected = torch.zeros(2, 3, 4)
    actual = expected.clone().double()
    actual[1, 2, 0] = actual[1, 2, 3] = 1.0
    diff = difference(actual, expected, TOL)
    assert diff.first_bad == (1, 2, 0)
    assert diff.max_abs_error == 1.0
    empty = difference(torch.zeros(0, 3), torch.zeros(0, 3), TOL)
    assert empty.ok and empty.max_abs_error == 0.0


def test_tolerance_for_case():
    case = Case(seq_len=5, batch=3, input_size=3, hidden_size=7)
    assert Tolerance.for_case(case) == Tolerance(1e-5)
    assert Tolerance.for_case(case.with_(dtype="float64")).atol < 1e-5
    assert Tolerance.for_case(case.with_(device="cuda")).atol > 1e-5
    assert Tolerance.for_case(case.with_(dtype="float16")).rtol > 0
    assert str(Tolerance(1e-5, 0.01)) == "atol 1e-05 + rtol 0.01"


def test_close_names_tensor_and_first_bad_index_and_records_the_error():
    check = Check(TOL)
    expected = torch.zeros(3, 2)
    actual = expected.clone()
    actual[2, 1] = 0.5
    with pytest.raises(CheckFailed) as raised:
        check.close("h_n", actual, expected)
    message = str(raised.value)
    assert message.startswith("h_n differs")
    assert "index [2, 1]" in message and "0.5" in message and "atol 1e-05" in message
    assert check.max_error == 0.5
    assert check.tolerance_used == TOL


def test_close_keeps_the_largest_error_and_its_tolerance():
    check, loose = Check(TOL), Tolerance(1.0)
    zeros = torch.zeros(4)
    check.close("a", zeros + 1e-6, zeros)
    assert check.max_error == pytest.approx(1e-6) and check.tolerance_used == TOL
    check.close("b", zeros + 0.5, zeros, loose)
    assert check.max_error == pytest.approx(0.5) and check.tolerance_used == loose
    check.close("c", zeros + 1e-7, zeros)
    assert check.max_error == pytest.approx(0.5) and check.tolerance_used == loose


def test_close_refuses_wrong_shapes_and_non_tensors():
    check = Check(TOL)
    with pytest.raises(CheckFailed, match=r"output has shape \(3, 2\); expected \(2, 3\)"):
        check.close("output", torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(CheckFailed, match="c_n is a tuple"):
        check.close("c_n", (torch.zeros(2),), torch.zeros(2))
    assert check.max_error is None


def test_outputs_close_reports_a_missing_c_n():
    check = Check(TOL, reference_name="torch lstm")
    h = torch.zeros(1, 2, 3)
    with pytest.raises(CheckFailed, match=r"c_n is missing.*torch lstm"):
        check.outputs_close(Outputs(h, h), Outputs(h, h, h))
    with pytest.raises(CheckFailed, match=r"h_n \(vs torch lstm\) differs"):
        check.outputs_close(Outputs(h, h + 1), Outputs(h, h))


def test_differs():
    check = Check(TOL)
    a = torch.zeros(5)
    b = a.clone()
    b[3] = 0.01
    assert check.differs("dropout masks", a, b) == pytest.approx(0.01)
    with pytest.raises(CheckFailed, match=r"dropout masks.*not above 0.001"):
        check.differs("dropout masks", a, a + 1e-4)  # default threshold: 100 x atol
    with pytest.raises(CheckFailed, match=r"not above 0.1"):
        check.differs("x", a, b, at_least=0.1)


def test_finite_and_shape():
    check = Check(TOL)
    check.finite("output", torch.zeros(2, 2))
    with pytest.raises(CheckFailed, match=r"2 non-finite values \(first at index \[0, 1\]"):
        check.finite("output", torch.tensor([[0.0, INF], [NAN, 1.0]]))
    with pytest.raises(CheckFailed, match=r"h_n has shape \(2,\); expected \(1, 2\)"):
        check.shape("h_n", torch.zeros(2), (1, 2))


def test_finite_where_the_reference_is_judges_only_those_positions():
    """A gradient non-finite where the reference's is too passes; one elsewhere fails, naming
    the first such position; only the judged positions are counted."""
    check = Check(TOL)
    reference_finite = torch.tensor([[True, False], [True, True]])
    check.finite("d input", torch.tensor([[0.0, NAN], [1.0, 2.0]]), reference_finite)
    assert check.compared == 3
    with pytest.raises(CheckFailed, match=r"1 non-finite values where the reference has none "
                                          r"\(first at index \[1, 0\]: inf\)"):
        check.finite("d input", torch.tensor([[0.0, NAN], [INF, 2.0]]), reference_finite)


def test_not_supported_and_fail():
    check = Check(TOL)
    with pytest.raises(NotSupported, match="no rows"):
        check.not_supported("no rows")
    with pytest.raises(CheckFailed, match="wrong dtype"):
        check.fail("wrong dtype")


def _raise(error):
    def run():
        raise error
    return run


def test_raises_like_same_type_passes():
    check = Check(TOL)
    assert check.raises_like("size", _raise(RuntimeError("a")), _raise(RuntimeError("b"))) == (
        "RuntimeError"
    )


def test_raises_like_different_type_fails_naming_both():
    with pytest.raises(CheckFailed, match=r"size: raised ValueError.*torch raises RuntimeError"):
        Check(TOL).raises_like("size", _raise(RuntimeError("a")), _raise(ValueError("b")))


def test_raises_like_no_raise_fails():
    with pytest.raises(CheckFailed, match="returned a result; torch raises IndexError"):
        Check(TOL).raises_like("rank", _raise(IndexError("a")), lambda: 42)


def test_raises_like_reference_must_raise():
    with pytest.raises(RuntimeError, match="reference accepted this input"):
        Check(TOL).raises_like("rank", lambda: None, _raise(ValueError("b")))
