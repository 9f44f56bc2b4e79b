"""Every command and code block of README.md and of the docs pages runs as written, on a
scratch user package ``mypkg``, or is named with the reason it does not; README.md stays within
200 lines; every relative link of the pages names a file (and heading) that exists.

The blocks are read from the pages themselves (``PAGES``: README.md and every docs/*.md): the
Python examples become the package's modules, the TOML entry points its installed metadata,
every ``seq-harness`` and ``pytest`` line runs (in-process, narrowed to a few suites or a tiny
shape where the full command would take minutes; the narrowing only adds options), and the
GitHub Actions workflow's steps run as a script, its install step against a local clone pinned
to a commit. A page whose examples another test module runs is named in ``ELSEWHERE`` with that
module, which must read it. A command line no test here knows fails
``test_every_command_is_exercised``, and a code block no test here uses fails
``test_every_block_is_used``, so a new example gets a test or a reason."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
# Every page a user reads, by its path from the repository's root.
PAGES = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
TEXT = {page: (ROOT / page).read_text() for page in PAGES}
README_MAX_LINES = 200

# Pages whose blocks another test module runs (it reads the page itself).
ELSEWHERE = {
    "docs/diagnosis.md": "tests/test_third_party_family.py",
    "docs/bisect.md": "tests/test_bisect.py",
    "docs/history.md": "tests/test_history_docs.py",
    "docs/ops.md": "tests/test_ops.py",
}
HERE = tuple(page for page in PAGES if page not in ELSEWHERE)
# The Python blocks here, by page: the mypkg module each becomes, or why it only compiles.
MODULES = {"README.md": "declarations", "docs/deployment.md": "deploy"}
COMPILED_ONLY = {
    "docs/packed-gru-backward.md": "a standalone torch-only reproduction that trains nn.GRU at "
                                   "the standard shape for tens of seconds (run by hand)",
}
SHELL = ("sh", "bash")

# Lines not run here, and why.
NOT_RUN = {
    "pip install tox": "the test command's own setup (.ci/run)",
    "tox -e run": "the main job, ten minutes (run by hand; README says its measured time)",
    "tox": "the test command itself (.ci/run)",
    "pip install .": "how tox installs the package under test",
    "tensorboard --logdir results/profile/tb": "a server (the tb extra is not installed in CI)",
}
EXTRAS = re.compile(r"^pip install '\.\[(\w+)\]'$")
# The seq-harness lines, by the start each test below picks its line with.
EXERCISED = ("seq-harness run --impl-class mypkg.rnn:",
             "seq-harness run --impl-class mypkg.deploy:", "seq-harness bench ",
             "seq-harness gate ", "seq-harness profile ",
             "pytest --pyargs harness.suites ")

RNN = '''
from torch import nn


class MyLSTM(nn.LSTM):
    """A user's LSTM: torch's, subclassed."""


class MyGRU(nn.GRU):
    """A user's GRU."""
'''

ENTRIES = '''
from harness.core.families import Family
from harness.core.layer import NamedParameters
from harness.core.spec import ImplSpec
from mypkg.rnn import MyLSTM

MY_LSTM = ImplSpec(name="my-lstm", family="lstm", factory=MyLSTM, origin="mypkg")


class LeakyLoop(NamedParameters):
    gates = 1
    recurrence = "none"


LEAKY = Family("leaky", LeakyLoop, gates=1, recurrence="none")
'''


def fenced(page: str) -> list[tuple[str, str]]:
    """Every fenced block of a page: (language, body)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", TEXT[page], flags=re.S | re.M)


def blocks(language: str, pages: tuple[str, ...] = HERE) -> list[str]:
    """The blocks of one language (sh: the shell's, bash included) on the pages run here."""
    languages = SHELL if language == "sh" else (language,)
    return [body for page in pages for lang, body in fenced(page) if lang in languages]


def command_lines(pages: tuple[str, ...] = HERE) -> list[str]:
    """Every command of the pages' shell blocks, comments dropped."""
    lines = []
    for block in blocks("sh", pages):
        for line in block.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def workflow_steps() -> list[str]:
    """The `run:` steps of the pages' workflow, folded (`>`) steps joined into one line."""
    (workflow,) = blocks("yaml")
    steps, current = [], None
    for line in workflow.splitlines():
        found = re.match(r"^\s*- run: ?(.*)$", line)
        if found:
            current = None
            if found.group(1).strip() == ">":
                current = []
                steps.append(current)
            else:
                steps.append([found.group(1).strip()])
        elif current is not None and line.startswith(" " * 10):
            current.append(line.strip())
        else:
            current = None
    return [" ".join(step) for step in steps]


def seq_harness_lines() -> list[str]:
    return [line for line in command_lines() + workflow_steps()
            if line.startswith("seq-harness ")]


@pytest.fixture(scope="module")
def mypkg(tmp_path_factory) -> Path:
    """A scratch user package from the pages' own examples, installed as a distribution
    whose entry points are the pages' TOML blocks."""
    root = tmp_path_factory.mktemp("user")
    package = root / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rnn.py").write_text(RNN)
    for page, module in MODULES.items():
        (block,) = blocks("python", (page,))
        imports = "from torch import nn\n\n" if module == "declarations" else ""
        (package / f"{module}.py").write_text(imports + block)
    (package / "harness_entries.py").write_text(ENTRIES)
    (package / "families.py").write_text("from mypkg.harness_entries import LEAKY\n")
    dist = root / "mypkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    points = []
    for block in blocks("toml"):
        group = re.search(r'^\[project\.entry-points\."(.+)"\]', block, flags=re.M).group(1)
        entry = re.search(r'^(\S+) = "([^"]+)"', block, flags=re.M)
        points.append(f"[{group}]\n{entry.group(1)} = {entry.group(2)}\n")
    (dist / "entry_points.txt").write_text("\n".join(points))
    return root


@pytest.fixture
def user(mypkg, tmp_path, monkeypatch) -> Path:
    """A user's working directory with mypkg importable, here and in worker processes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(mypkg))
    path = os.pathsep.join(p for p in (str(mypkg), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    return tmp_path


def argv_of(line: str) -> list[str]:
    return shlex.split(line.replace("${{ github.base_ref }}", "main"))[1:]


@pytest.mark.parametrize("page", PAGES)
def test_every_command_is_exercised(page):
    if page in ELSEWHERE:
        module = ELSEWHERE[page]
        assert re.search(rf"[\"']{re.escape(Path(page).name)}[\"']", (ROOT / module).read_text()), (
            f"{page} is said to be run by {module}, which does not read it")
        return
    steps = workflow_steps()[1:] if blocks("yaml", (page,)) else []
    for line in command_lines((page,)) + steps:
        assert line in NOT_RUN or EXTRAS.match(line) or line.startswith(EXERCISED), (
            f"{page} command {line!r} is run by no test in tests/test_readme.py")
    assert len(workflow_steps()) == 3


def test_every_block_is_used():
    """Every block of the pages run here is a shell block (its lines checked above), a TOML
    entry point, the workflow, or a Python module of mypkg (or compiled, for a reason)."""
    for page in HERE:
        for language, _ in fenced(page):
            assert language in (*SHELL, "toml", "yaml", "python"), (
                f"{page}: a {language or 'plain'} block no test in tests/test_readme.py uses")
        python = blocks("python", (page,))
        assert len(python) == (page in MODULES or page in COMPILED_ONLY), (
            f"{page}: {len(python)} Python blocks; tests/test_readme.py uses "
            f"{int(page in MODULES or page in COMPILED_ONLY)}")
    assert len(blocks("yaml")) == 1


def test_readme_is_short():
    """README.md is the page a newcomer reads; the reference lives in docs/."""
    lines = len(TEXT["README.md"].splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


def test_every_docs_page_is_linked_from_the_readme():
    """README.md's list of where to go next names every page of docs/."""
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[\w-]+)?\)", TEXT["README.md"]))
    missing = sorted(set(PAGES) - {"README.md"} - linked)
    assert not missing, f"README.md does not link {', '.join(missing)}"


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a markdown file's headings."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", "")).replace(" ", "-")
            for title in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_point_to_files_that_exist(page):
    """Every relative link of a page (outside code) names an existing file, and a heading of it
    where it names one."""
    text = re.sub(r"^```.*?^```", "", TEXT[page], flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = ((ROOT / page).parent / path).resolve() if path else ROOT / page
        assert target.exists(), f"{page}: link {link!r} names no file"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), (
                f"{page}: link {link!r} names no heading of {path or page}")


def test_extras_named_on_the_pages_exist():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    named = [EXTRAS.match(line).group(1) for line in command_lines() if EXTRAS.match(line)]
    assert named and set(named) <= set(extras)


def test_declarations_snippet_declares_what_it_says(user):
    from mypkg.declarations import MyLSTM

    from harness.core.spec import spec_from_class

    spec = spec_from_class(MyLSTM, family_name="lstm")
    assert not spec.capabilities.proj_size and not spec.capabilities.packed
    assert spec.capabilities.dtypes == frozenset({"float32"})
    assert callable(MyLSTM.load_reference_weights)


def test_plug_in_example_runs(user):
    """`seq-harness run --impl-class mypkg.rnn:MyLSTM --family lstm`, and the same through
    pytest, narrowed to the comparison with torch."""
    (run_line,) = [x for x in command_lines() if x.startswith("seq-harness run --impl-class "
                                                              "mypkg.rnn:")]
    narrowed = ["--suite", "shapes", "-k", "values_match_reference", "--workers", "0",
                "--out", str(user / "run")]
    assert main([*argv_of(run_line), *narrowed]) == 0
    records = [json.loads(x) for x in (user / "run" / "records.jsonl").open()]
    assert {r["impl"] for r in records} == {"my-lstm"}
    assert sum(r["outcome"] == "passed" for r in records) >= 4
    (pytest_line,) = [x for x in command_lines() if x.startswith("pytest --pyargs")]
    done = subprocess.run([sys.executable, "-m", *shlex.split(pytest_line),
                           "--suite", "shapes", "-k", "values_match_reference", "-q",
                           "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=600, cwd=user)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_int8_wrapper_fails_only_where_its_page_says(user):
    """docs/deployment.md's int8 wrapper, run as it is, passes every check it claims but one:
    4-D input raises RuntimeError where nn.LSTM raises ValueError (shapes and errors suites
    here)."""
    (run_line,) = [x for x in command_lines() if x.startswith("seq-harness run --impl-class "
                                                              "mypkg.deploy:")]
    out = user / "int8"
    code = main([*argv_of(run_line), "--suite", "shapes", "--suite", "errors",
                 "--workers", "0", "--out", str(out)])
    records = [json.loads(x) for x in (out / "records.jsonl").open()]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert code == 1 and {(r["suite"], r["check"]) for r in failed} == {
        ("errors", "input_of_wrong_rank")}, [r["nodeid"] for r in failed]
    assert all("RuntimeError" in r["message"] for r in failed)
    assert any(r["outcome"] == "passed" and r["check"] == "values_match_reference"
               for r in records)


def test_bench_example_times_the_wrapper(user):
    (line,) = [x for x in command_lines() if x.startswith("seq-harness bench ")]
    code = main([*argv_of(line), "--phase", "inference", "--workers", "1",
                 "--min-run-time", "0.01", "--no-first-call", "--no-memory", "--no-peak",
                 "--out", str(user / "bench")])
    assert code == 0
    records = [json.loads(x) for x in (user / "bench" / "records.jsonl").open()]
    timed = {r["impl"] for r in records if r["outcome"] == "passed" and r["check"] == "inference"}
    assert timed == {"my-int-8-lstm", "torch-lstm"}


def test_entry_point_examples_publish_an_implementation_and_a_family(user):
    listing = subprocess.run([sys.executable, "-m", "harness", "list"], capture_output=True,
                             text=True, timeout=600, cwd=user)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert any(x.startswith("my-lstm") and " lstm " in x for x in lines), listing.stdout
    assert "leaky" in listing.stdout


@pytest.mark.parametrize("line", [x for x in seq_harness_lines()
                                  if x.startswith("seq-harness gate ")])
def test_gate_examples_resolve_both_sides(line, user, monkeypatch):
    """Each gate line parses and resolves its sides; measuring (ten processes) is the gate's
    own tests' business, so it stops at the request."""
    import harness.cli.gate as gate

    seen = []

    def measured(request, *args, **kwargs):
        seen.append(request)
        raise SystemExit(0)

    monkeypatch.setattr(gate, "measure_sides", measured)
    with pytest.raises(SystemExit):
        main(argv_of(line))
    (request,) = seen
    assert request.head.name in {"torch-gru", "my-gru"}
    assert request.base.name == "torch-gru" or request.ref == "origin/main"


def test_workflow_steps_run_as_a_script(user, tmp_path_factory):
    """The workflow's install step, against a clone of this repository pinned to its commit,
    installs seq-harness (resolved, built, not downloaded: pip --dry-run, no dependencies);
    its run step runs (narrowed); its gate step is covered above."""
    install, run_step, gate_step = workflow_steps()
    assert gate_step.startswith("seq-harness gate --base-ref origin/${{ github.base_ref }}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True)
    if commit.returncode != 0:
        pytest.skip("not a git checkout")
    url = re.search(r'"seq-harness @ (git\+https://github\.com/OWNER/seq-harness)@COMMIT"',
                    install)
    assert url, install
    local = install.replace(url.group(1), f"git+file://localhost{ROOT}").replace(
        "COMMIT", commit.stdout.strip())
    argv = shlex.split(local)
    argv = [a for a in argv if a not in ("torch", ".")]  # torch is installed; `.` is mypkg
    try:  # build offline where setuptools is at hand
        import setuptools  # noqa: F401
        offline = ["--no-index", "--no-build-isolation"]
    except ImportError:
        offline = []
    # --ignore-installed: resolve it even where this very version is installed (tox, CI).
    done = subprocess.run([sys.executable, "-m", *argv, "--dry-run", "--no-deps", *offline,
                           "--ignore-installed", "--quiet", "--report", "-"],
                          capture_output=True, text=True, timeout=600, cwd=user)
    assert done.returncode == 0, done.stderr[-2000:]
    (item,) = json.loads(done.stdout)["install"]
    assert item["metadata"]["name"] == "seq-harness"
    assert item["download_info"]["vcs_info"]["commit_id"] == commit.stdout.strip()
    narrowed = ["--suite", "shapes", "-k", "values_match_reference", "--workers", "0",
                "--out", str(user / "ci")]
    assert main([*argv_of(run_step), *narrowed]) == 0


def test_profile_example_runs(user):
    (line,) = [x for x in command_lines() if x.startswith("seq-harness profile ")]
    assert main([*argv_of(line), "--shape", "5,2,8,8", "--steps", "1", "--warmup", "1"]) == 0
    assert (user / "results" / "profile" / "profile.md").is_file()


def test_python_blocks_are_complete_files():
    """The Python examples are whole modules (imports included), as a user copies them; all but
    README's declarations, a class shown alone."""
    for page in HERE:
        for block in blocks("python", (page,)):
            if MODULES.get(page) != "declarations":
                compile(textwrap.dedent(block), page, "exec")
