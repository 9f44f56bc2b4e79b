"""Unit tests of harness/registry and harness/conformance/suites.py: loading, selecting,
resolving."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from harness.conformance.suites import suite_files, suite_names, thorough_names
from harness.impls.builtin import TORCH_GRU
from harness.registry import GROUP, Registry, choose, resolve_class, spec_for_class_path
from harness.registry import entry_points as registry_module
from tests import fixtures_impls

BUILTINS = {
    "scratch-rnn": "rnn_tanh",
    "scratch-lstm": "lstm",
    "scratch-gru": "gru",
    "torch-rnn-tanh": "rnn_tanh",
    "torch-rnn-relu": "rnn_relu",
    "torch-lstm": "lstm",
    "torch-gru": "gru",
    "torch-rnn-tanh-packed": "rnn_tanh",
    "torch-rnn-relu-packed": "rnn_relu",
    "torch-lstm-packed": "lstm",
    "torch-gru-packed": "gru",
    "fast-rnn": "rnn_tanh",
    "fast-lstm": "lstm",
    "fast-gru": "gru",
    "fast-lstm-cudagraph": "lstm",
    "fast-gru-cudagraph": "gru",
    "mingru-loop": "mingru",
    "mingru-scan": "mingru",
    "minlstm-loop": "minlstm",
    "minlstm-scan": "minlstm",
    "indrnn-loop": "indrnn",
    "indrnn-fused": "indrnn",
    "rglru-loop": "rglru",
    "rglru-scan": "rglru",
    "torch-lstm-int8": "lstm",
    "torch-gru-int8": "gru",
    "compiled-lstm": "lstm",
    "compiled-gru": "gru",
    "script-lstm": "lstm",
    "onnxruntime-lstm": "lstm",
    "onnxruntime-gru": "gru",
    "scalar-decay-recurrent": "scalar_decay",
    "scalar-decay-chunk": "scalar_decay",
    "scalar-decay-parallel": "scalar_decay",
    "gated-delta-recurrent": "gated_delta",
    "gated-delta-chunk": "gated_delta",
    "mlstm-recurrent": "mlstm",
    "mlstm-chunk": "mlstm",
    "mlstm-parallel": "mlstm",
}
FIXTURES = "tests.fixtures_impls"


def test_load_finds_exactly_the_builtins():
    registry = Registry.load()
    assert {name: spec.family for name, spec in registry.specs.items()} == BUILTINS
    assert dict(registry.broken) == {}
    families = [spec.family for spec in registry.specs.values()]
    order = ["rnn_tanh", "rnn_relu", "lstm", "gru", "mingru", "minlstm", "indrnn", "rglru",
             "scalar_decay", "gated_delta", "mlstm"]
    assert families == sorted(families, key=order.index)


def test_select_keeps_order_and_names_valid_entries_for_an_unknown_one():
    registry = Registry.load()
    chosen = registry.select(["torch-gru", "scratch-rnn", "torch-gru"])
    assert [s.name for s in chosen] == ["torch-gru", "scratch-rnn"]
    with pytest.raises(ValueError, match="'torch-lstn'") as raised:
        registry.select(["torch-lstn"])
    assert all(name in str(raised.value) for name in BUILTINS)


class FakeEntryPoint:
    def __init__(self, name, value, load):
        self.name, self.value, self._load = name, value, load

    def load(self):
        return self._load()


def _boom():
    raise ImportError("no module named 'missing_plugin'")


@pytest.fixture
def with_broken(monkeypatch):
    """The real entry points plus three that fail in different ways."""
    real = list(entry_points(group=GROUP))
    fakes = [
        FakeEntryPoint("broken-import", "missing_plugin:SPEC", _boom),
        FakeEntryPoint("not-a-spec", "plugin:THING", lambda: [42]),
        FakeEntryPoint("dup-gru", "plugin:DUP", lambda: TORCH_GRU),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [*real, *fakes])
    return Registry.load()


def test_broken_entry_points_are_kept_and_do_not_hide_the_others(with_broken):
    assert set(with_broken.specs) == set(BUILTINS)
    assert set(with_broken.broken) == {"broken-import", "not-a-spec", "dup-gru"}
    why = with_broken.broken["broken-import"]
    assert "missing_plugin:SPEC" in why and "ImportError" in why and "\n" not in why
    assert "expected ImplSpec" in with_broken.broken["not-a-spec"]
    with pytest.raises(ValueError, match=r"broken-import.*broken"):
        with_broken.select(["broken-import"])


def test_choose_without_arguments_is_the_whole_registry_with_broken_entries(with_broken):
    selection = choose(registry=with_broken)
    assert [s.name for s in selection.specs] == list(with_broken.specs)
    assert set(selection.broken) == set(with_broken.broken)


def test_choose_impl_classes_alone_selects_only_them(with_broken):
    selection = choose(impl_classes=[f"{FIXTURES}:MyLSTM"], family="lstm", registry=with_broken)
    assert [s.name for s in selection.specs] == ["my-lstm"]
    assert selection.specs[0].origin == f"{FIXTURES}:MyLSTM"
    assert selection.broken == {}


def test_choose_combines_impls_and_impl_classes():
    selection = choose(impls=["torch-lstm"], impl_classes=[f"{FIXTURES}:MyLSTM"], family="lstm")
    assert [s.name for s in selection.specs] == ["torch-lstm", "my-lstm"]


def test_choose_family_without_impl_class_is_refused():
    with pytest.raises(ValueError, match=r"--family 'lstm'.*--impl-class"):
        choose(impls=["torch-lstm"], family="lstm")


@pytest.mark.parametrize(
    ("impls", "classes"),
    [(["torch-lstm"], ["ClashingLSTM"]), ([], ["MyLSTM", "MyLSTM"])],
)
def test_choose_refuses_a_name_clash(impls, classes):
    paths = [f"{FIXTURES}:{c}" for c in classes]
    with pytest.raises(ValueError, match=r"already selected.*harness_name"):
        choose(impls=impls, impl_classes=paths, family="lstm")


# --impl-class -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["nocolon", "a:", ":B", "a:b:c"])
def test_malformed_class_path(path):
    with pytest.raises(ValueError, match=r"malformed.*MODULE:CLASS") as raised:
        resolve_class(path)
    assert repr(path) in str(raised.value)
    with pytest.raises(ValueError, match="malformed"):
        spec_for_class_path(path, "lstm")


def test_resolve_class_follows_dotted_attributes():
    assert resolve_class(f"{FIXTURES}:Outer.InnerGRU") is fixtures_impls.Outer.InnerGRU


@pytest.mark.parametrize(
    ("path", "error", "pattern"),
    [
        ("tests.no_such_module:X", ValueError, "'tests.no_such_module' does not import"),
        (f"{FIXTURES}:Missing", ValueError, "has no attribute 'Missing'"),
        (f"{FIXTURES}:Outer.Missing", ValueError, "has no attribute 'Outer.Missing'"),
        (f"{FIXTURES}:NotAModule", TypeError, "not an nn.Module class"),
        (f"{FIXTURES}:not_a_class", TypeError, "not an nn.Module class"),
        (f"{FIXTURES}:BadName", ValueError, "'Bad Name' is invalid"),
        (f"{FIXTURES}:BadCapabilities", ValueError, "unknown capabilities.*packd"),
        (f"{FIXTURES}:RaisingLSTM", ValueError, "does not build.*boom"),
    ],
)
def test_spec_for_class_path_errors_name_the_problem(path, error, pattern):
    with pytest.raises(error, match=pattern) as raised:
        spec_for_class_path(path, "lstm")
    assert path in str(raised.value)
    assert "\n" not in str(raised.value)


def test_spec_for_class_path_needs_a_known_family():
    path = f"{FIXTURES}:MyLSTM"
    with pytest.raises(ValueError, match=r"needs --family.*rnn_tanh, rnn_relu, lstm, gru"):
        spec_for_class_path(path, None)
    with pytest.raises(ValueError, match=r"unknown family 'lstn'.*rnn_tanh"):
        spec_for_class_path(path, "lstn")


def test_spec_for_class_path_builds_a_spec():
    spec = spec_for_class_path(f"{FIXTURES}:Outer.InnerGRU", "gru")
    assert spec.name == "inner-gru" and spec.family == "gru"
    assert spec.origin == f"{FIXTURES}:Outer.InnerGRU"


# Suites -----------------------------------------------------------------------------------------


def test_suite_files():
    names = suite_names()
    assert {"shapes", "padding", "many-to-one", "errors"} <= set(names)
    measuring = ["accuracy", "stability", "adding", "recall"]
    assert thorough_names() == measuring
    # the quick verdict: every suite but the measuring ones and the opt-in latency
    assert len(suite_files([])) == len(names) - len(measuring) - 1
    assert not {f"test_{m}.py" for m in measuring} & {f.name for f in suite_files([])}
    # every suite but latency: what `job` and `--all-suites` run
    assert len(suite_files([], every=True)) == len(names) - 1
    assert "test_latency.py" not in {f.name for f in suite_files([], every=True)}
    files = suite_files(["many-to-one", "shapes", "many-to-one"])
    assert [f.name for f in files] == ["test_many_to_one.py", "test_shapes.py"]
    assert [f.name for f in suite_files(["adding"])] == ["test_adding.py"]  # named: it runs
    assert all(f.is_file() for f in files)


def test_skipped_suites_are_left_out_and_must_exist():
    assert [p.stem for p in suite_files([], ["adding", "recall"], every=True)] == [
        p.stem for p in suite_files([], every=True)
        if p.stem not in ("test_adding", "test_recall")]
    with pytest.raises(ValueError, match=r"'add'.*adding"):
        suite_files([], ["add"])


def test_suite_files_names_valid_suites_for_an_unknown_one():
    with pytest.raises(ValueError, match="unknown suite 'shape'") as raised:
        suite_files(["shapes", "shape"])
    assert all(name in str(raised.value) for name in suite_names())
