"""The history store and its judgement (harness.history, ``seq-harness history``): on SQLite
files here, and on a real PostgreSQL server the tests start themselves (marker ``postgres``).

Results directories are synthetic (tests/synthetic_history.py): written with the project's own
RecordWriter and RunInfo, one run per fake commit."""

from __future__ import annotations

import itertools
import math
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text

from harness.cli import main
from harness.history import (
    SCHEMA_VERSION,
    HistoryError,
    add_directories,
    change_points,
    describe_changes,
    holdings,
    judge,
    open_database,
    resolve_url,
)
from harness.history.schema import Machine, Outcome, Point, Run, Series
from harness.records import read_run_info, write_run_info
from tests.synthetic_history import (
    FINGERPRINT,
    build_gate,
    build_history,
    fake_commit,
    run_info,
    write_run,
)

ROOT = Path(__file__).resolve().parent.parent
# Per synthetic run: 2 implementations x 2 phases x 2 processes; 2 x 3 checks.
POINTS_PER_RUN, OUTCOMES_PER_RUN, LATENCY_SERIES = 8, 6, 4


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite'}"


def counts(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {table.__tablename__: connection.execute(
            select(func.count()).select_from(table)).scalar_one()
            for table in (Machine, Run, Series, Point, Outcome)}


def test_adding_twice_adds_nothing(tmp_path, capsys):
    build_history(tmp_path / "results", 3)
    url = db_url(tmp_path)
    assert main(["history", "add", str(tmp_path / "results"), "--db", url]) == 0
    first = capsys.readouterr().out
    assert ("added 3 runs, 18 check outcomes, 4 latency series, 24 points; skipped 0 already "
            "there") in first
    # a run added before keeps its machine: naming one now adds no machine
    assert main(["history", "add", str(tmp_path / "results"), "--db", url,
                 "--machine", "renamed"]) == 0
    assert ("added 0 runs, 0 check outcomes, 0 latency series, 0 points; skipped 42 already "
            "there") in capsys.readouterr().out
    engine = open_database(url)
    assert counts(engine) == {"machines": 1, "runs": 3, "series": 10, "points": 24,
                              "outcomes": 18}


def test_a_run_completed_later_adds_only_what_is_new(tmp_path):
    """A resumed run keeps its run_id and appends records: the second add takes the new ones."""
    [directory] = build_history(tmp_path / "results", 1)
    records = (directory / "records.jsonl").read_text().splitlines(keepends=True)
    (directory / "records.jsonl").write_text("".join(records[:5]))
    engine = open_database(db_url(tmp_path))
    first = add_directories(engine, [directory])
    assert (first.runs, first.points, first.outcomes) == (1, 4, 1)  # 4 timings, then a check
    (directory / "records.jsonl").write_text("".join(records))
    added = add_directories(engine, [directory])
    assert (added.runs, added.points, added.outcomes, added.skipped) == (0, 4, 5, 5)


def test_job_and_gate_directories_add_every_run_below(tmp_path):
    build_history(tmp_path / "job" / "checks", 1)
    build_history(tmp_path / "job" / "timings", 1, first=1)
    build_history(tmp_path / "gate" / "base", 1, first=2)
    engine = open_database(db_url(tmp_path))
    added = add_directories(engine, [tmp_path / "job", tmp_path / "gate"])
    assert added.runs == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no run\.json in it or below"):
        add_directories(engine, [tmp_path / "job", tmp_path / "empty"])
    assert counts(engine)["runs"] == 3  # a bad directory is found before anything is added


def test_a_directory_without_runs_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["history", "add", str(tmp_path / "empty"), "--db", db_url(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no run.json in it or below" in err


# A writer process: imports everything first, waits for the go file, then adds its directory,
# reading each run 50 ms late (between its transactions), so that the two writers' transactions
# overlap on a loaded machine too (where one could otherwise finish before the other starts).
WRITER = """
import sys, time
from pathlib import Path
from harness.cli import main
from harness.history import ingest
read_run_info = ingest.read_run_info
ingest.read_run_info = lambda directory: (time.sleep(0.05), read_run_info(directory))[1]
Path(sys.argv[2]).touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.01)
sys.exit(main(["history", "add", *sys.argv[3:]]))
"""


def test_two_writers_at_once_lose_nothing(tmp_path):
    """Two processes add different directories (sharing the machine and every series) into one
    SQLite file at the same moment: every run, point and outcome arrives once, and their
    transactions did interleave."""
    two_writers(tmp_path, db_url(tmp_path), runs=30)


def first_connection(url: str, go: str) -> str | None:
    """One writer's first connection to a new SQLite file, made once ``go`` exists: None, or
    what it raised."""
    from harness.history.database import make_engine

    while not os.path.exists(go):  # spinning: the writers start within microseconds
        pass
    try:
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x)")
        engine.dispose()
    except Exception as error:
        return str(error).splitlines()[0]
    return None


def test_writers_opening_a_new_sqlite_file_at_once_all_get_in(tmp_path):
    """Four processes switch a new file to WAL at the same moment: SQLite answers "database is
    locked" to one of two such connections at once, without its busy timeout (the last try
    without a retry failed in about half of such rounds); every one gets in."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        for round_ in range(12):
            url, go = f"sqlite:///{tmp_path}/{round_}.sqlite", str(tmp_path / f"go{round_}")
            answers = [pool.apply_async(first_connection, (url, go)) for _ in range(4)]
            time.sleep(0.05)
            Path(go).touch()
            assert [a.get(timeout=300) for a in answers] == [None] * 4, round_


def two_writers(tmp_path: Path, url: str, *, runs: int) -> None:
    """Two processes add ``runs`` runs each (directories a and b) into ``url`` at once: every
    run, point and outcome arrives once, and their transactions interleaved."""
    build_history(tmp_path / "a", runs, seed=1)
    build_history(tmp_path / "b", runs, seed=2, first=runs)
    for out in add_at_once(tmp_path, url, ["a", "b"]):
        assert f"added {runs} runs" in out
    engine = open_database(url)
    assert counts(engine) == {
        "machines": 1, "runs": 2 * runs, "series": 10, "points": 2 * runs * POINTS_PER_RUN,
        "outcomes": 2 * runs * OUTCOMES_PER_RUN}
    assert_interleaved(engine)


def add_at_once(tmp_path: Path, url: str, sides: list[str]) -> list[str]:
    """``history add tmp_path/SIDE`` in a process per side, released at the same moment once
    each has imported everything; their outputs."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(go), f"{go}-{side}",
                                 str(tmp_path / side), "--db", url], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for side in sides]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}-{side}").exists() for side in sides) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = []
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        outputs.append(out)
    return outputs


def assert_interleaved(engine) -> None:
    """The runs' insertion order switches between the writers' directories: they overlapped."""
    with engine.connect() as connection:
        sides = [Path(source).parent.name for source in
                 connection.execute(select(Run.source).order_by(Run.id)).scalars()]
    switches = sum(x != y for x, y in itertools.pairwise(sides))
    assert switches >= 2, f"the writers did not overlap: {sides}"


def test_a_machine_is_its_hardware_not_its_hostname(tmp_path):
    renamed = dict(FINGERPRINT, hostname="runner-7f3a", memory_gib=16)
    other_cpu = dict(FINGERPRINT, cpu_id="GenuineTest 6 85 4")  # another stepping
    build_history(tmp_path / "one", 1)
    build_history(tmp_path / "renamed", 1, first=1, fingerprint=renamed,
                  platform="Linux-6.5-x86_64-with-glibc2.36")
    build_history(tmp_path / "other", 1, first=2, fingerprint=other_cpu)
    engine = open_database(db_url(tmp_path))
    add_directories(engine, [tmp_path / "one", tmp_path / "renamed"])
    assert counts(engine)["machines"] == 1
    add_directories(engine, [tmp_path / "other"])
    assert counts(engine)["machines"] == 2
    assert counts(engine)["series"] == 20  # two CPUs never share a series
    build_history(tmp_path / "named", 1, first=3)
    add_directories(engine, [tmp_path / "named"], machine="rack-2")
    labels = sorted(h.label for h in holdings(engine))
    assert labels == ["Test CPU 9000 (AVX2)", "Test CPU 9000 (AVX2)", "rack-2"]


@pytest.mark.parametrize(("version", "says"), [
    (SCHEMA_VERSION + 1, "newer than this seq-harness reads"),
    (0, "cannot upgrade from 0"),
])
def test_another_schema_version_is_refused_in_one_line(tmp_path, capsys, version, says):
    build_history(tmp_path / "results", 1)
    url = db_url(tmp_path)
    engine = open_database(url)
    add_directories(engine, [tmp_path / "results"])
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_version SET version = :v"), {"v": version})
    engine.dispose()
    with pytest.raises(HistoryError, match=says):
        open_database(url)
    assert main(["history", "check", "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"schema version {version}" in err


def test_a_database_that_is_not_a_history_is_refused(tmp_path):
    url = db_url(tmp_path)
    engine = open_database(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE schema_version"))
    with pytest.raises(HistoryError, match="not a seq-harness history database"):
        open_database(url)


def test_the_url_comes_from_the_option_the_environment_or_the_default():
    assert resolve_url("x/h.sqlite", {}) == "sqlite:///x/h.sqlite"
    assert resolve_url(None, {"SEQ_HARNESS_DB": "postgresql+psycopg://u@h/d"}) == \
        "postgresql+psycopg://u@h/d"
    assert resolve_url(None, {}) == "sqlite:///seq-harness-history.sqlite"
    with pytest.raises(HistoryError, match="is not supported; use sqlite"):
        open_database("nosuchdb://x")


def test_reading_a_missing_file_creates_nothing(tmp_path, capsys):
    assert main(["history", "list", "--db", str(tmp_path / "typo.sqlite")]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert not (tmp_path / "typo.sqlite").exists()


def test_commit_parent_time_and_branch_come_from_the_checkout(tmp_path):
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for n in range(2):
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", f"c{n}"], check=True,
                       env={**os.environ, "GIT_COMMITTER_DATE": f"2024-02-0{n + 1}T12:00:00+02:00"})
    head, parent = (subprocess.run([*git, "rev-parse", ref], capture_output=True, text=True,
                                   check=True).stdout.strip() for ref in ("HEAD", "HEAD~1"))
    write_run(repo / "results", replace(run_info(0), git_commit=head), [])
    engine = open_database(db_url(tmp_path))
    add_directories(engine, [repo / "results"])
    with engine.connect() as connection:
        run = connection.execute(select(Run)).one()
    assert (run.commit, run.parent_commit, run.branch) == (head, parent, "main")
    assert str(run.commit_time) == "2024-02-02 10:00:00"  # UTC


def test_check_finds_an_injected_ten_percent_step(tmp_path, capsys):
    build_history(tmp_path / "results", 30, step_at=22, noise=0.02, seed=3)
    url = db_url(tmp_path)
    main(["history", "add", str(tmp_path / "results"), "--db", url])
    capsys.readouterr()
    assert main(["history", "check", "--db", url]) == 1
    out = capsys.readouterr().out
    assert "1 new regression, no check started failing" in out.splitlines()[-1]
    [change] = judge(open_database(url)).new_regressions
    assert (change.impl, change.phase) == ("torch-gru", "inference")
    assert change.last_good.commit == fake_commit(21)
    assert change.first_bad.commit == fake_commit(22)
    assert change.change.low < 1.10 < change.change.high
    assert fake_commit(21)[:12] in out and fake_commit(22)[:12] in out


def test_check_is_quiet_on_a_flat_noisy_history(tmp_path, capsys):
    build_history(tmp_path / "results", 40, noise=0.03, seed=4)
    url = db_url(tmp_path)
    main(["history", "add", str(tmp_path / "results"), "--db", url])
    capsys.readouterr()
    assert main(["history", "check", "--db", url]) == 0
    assert "no new regression, no check started failing" in capsys.readouterr().out


def test_check_names_the_commit_a_check_started_failing_at(tmp_path, capsys):
    build_history(tmp_path / "results", 12, fail_at=9, seed=5)
    url = db_url(tmp_path)
    main(["history", "add", str(tmp_path / "results"), "--db", url])
    capsys.readouterr()
    assert main(["history", "check", "--db", url]) == 1
    out = capsys.readouterr().out
    assert "no new regression, 1 check started failing" in out.splitlines()[-1]
    [broken] = judge(open_database(url)).breakages
    assert (broken.impl, broken.check, broken.failing) == ("torch-gru", "matches_reference", 3)
    assert (broken.last_good.commit, broken.first_bad.commit) == (fake_commit(8), fake_commit(9))
    assert "h_n differs by 0.3" in out


def test_dirty_runs_are_left_out_of_the_judgement(tmp_path):
    build_history(tmp_path / "clean", 12, seed=6)
    build_history(tmp_path / "dirty", 4, first=12, step_at=12, step=0.5, seed=7, dirty=True)
    engine = open_database(db_url(tmp_path))
    add_directories(engine, [tmp_path / "clean", tmp_path / "dirty"])
    judgement = judge(engine)
    assert not judgement.failed and judgement.dirty_runs == 4


def test_a_run_resumed_on_other_code_counts_as_modified(tmp_path):
    """--resume on another commit mixes two code states in one run: no commit says what ran."""
    [first, second] = build_history(tmp_path / "runs", 2, seed=6)
    for directory, commit in ((first, None), (second, "f" * 40)):
        info = read_run_info(directory)
        resume = {"at": info.created, "argv": ["seq-harness", "run", "--resume", "x"],
                  "git_commit": commit or info.git_commit, "git_modified": False}
        write_run_info(directory, replace(info, resumes=[resume]))
    assert not read_run_info(first).mixed and read_run_info(second).mixed
    engine = open_database(db_url(tmp_path))
    add_directories(engine, [first, second])
    assert judge(engine).dirty_runs == 1
    info = read_run_info(first)  # resumed on other code after it was added: added again
    write_run_info(first, replace(info, resumes=[*info.resumes, {
        "at": info.created, "argv": [], "git_commit": "e" * 40, "git_modified": False}]))
    add_directories(engine, [first])
    assert judge(engine).dirty_runs == 2


def test_flat_histories_rarely_alarm_and_steps_are_found():
    """The detector's calibration in small (docs/history.md has the full one): 400 flat
    histories of 100 runs with heavy-tailed noise (Student t, 3 degrees of freedom, 2% scale)
    raise a significant change of at least 3% in at most 2% of them; a +10% step is found
    within 2 runs in at least 95% of 100 histories."""
    rng = np.random.default_rng(11)
    alarms = 0
    for _ in range(400):
        values = np.exp(rng.standard_t(3, 100) * 0.02 / math.sqrt(3))
        found = describe_changes(values, change_points(values))
        alarms += any(c.significant() and abs(c.ratio - 1) > 0.03 for c in found)
    assert alarms <= 8
    found_steps = 0
    for _ in range(100):
        logs = rng.standard_t(3, 40) * 0.02 / math.sqrt(3)
        logs[30:] += math.log(1.10)
        found_steps += any(abs(i - 30) <= 2 for i in change_points(np.exp(logs)))
    assert found_steps >= 95


# --- a real PostgreSQL server, started here ------------------------------------------------------

def postgres_binaries() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    found = [Path(on_path).parent] if on_path else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
        if p.parent.name.isdigit() else 0)
    return next((d for d in reversed(found) if (d / "pg_ctl").exists()), None)


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server in a temporary directory, on a unix socket only (no TCP port to
    collide), trusted local connections; stopped and removed afterwards. initdb refuses root,
    so as root it runs as the ``postgres`` system user (runuser)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install "
                                          "'seq-harness[postgres]')")
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt install "
                    "postgresql)")
    as_user: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="seq-harness-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(directory)
            pytest.skip("running as root, and there is no 'postgres' user to run initdb as")
        if shutil.which("runuser") is None:
            shutil.rmtree(directory)
            pytest.skip("running as root without runuser to run initdb as 'postgres'")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:  # a free port number: it names the socket file
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = directory / "data"
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-sync"], check=True,
                   capture_output=True, timeout=120)
    options = f"-k {directory} -c listen_addresses='' -p {port} -c fsync=off"
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                    "-t", "60", "-l", str(directory / "log"), "start"], check=True,
                   capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg://postgres@/{{database}}?host={directory}&port={port}"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database on the server for one test."""
    import psycopg

    name = "history_" + "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    admin = postgres_server.format(database="postgres").replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.format(database=name)


@pytest.mark.postgres
def test_postgres_add_twice_check_and_refusal(tmp_path, postgres_url, capsys):
    build_history(tmp_path / "results", 30, step_at=22, fail_at=26, seed=3)
    assert main(["history", "add", str(tmp_path / "results"), "--db", postgres_url]) == 0
    assert main(["history", "add", str(tmp_path / "results"), "--db", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "added 30 runs, 180 check outcomes, 4 latency series, 240 points" in out
    assert "added 0 runs, 0 check outcomes, 0 latency series, 0 points; skipped 420" in out
    assert main(["history", "check", "--db", postgres_url]) == 1
    assert "1 new regression, 1 check started failing" in capsys.readouterr().out
    engine = open_database(postgres_url)
    [change] = judge(engine).new_regressions
    assert change.first_bad.commit == fake_commit(22)
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_version SET version = :v"),
                           {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    assert main(["history", "list", "--db", postgres_url]) == 2
    assert "newer than this seq-harness reads" in capsys.readouterr().err


@pytest.mark.postgres
def test_postgres_two_writers_at_once_lose_nothing(tmp_path, postgres_url):
    """As on SQLite: two processes, different directories, one database, the same moment (the
    first of them also creates the tables while the other may be doing the same)."""
    two_writers(tmp_path, postgres_url, runs=20)


@pytest.mark.postgres
def test_postgres_upgrades_version_1_and_adds_anchor_comparisons_once(tmp_path, postgres_url,
                                                                      capsys):
    """A version 1 database (no anchor_comparisons) upgrades in place on PostgreSQL too; two
    gates against the anchor add their comparisons once; both 8% slower, they fail."""
    engine = open_database(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE anchor_comparisons"))
        connection.execute(text("UPDATE schema_version SET version = 1"))
    engine.dispose()
    for index, ratio in ((1, 1.08), (2, 1.08)):
        build_gate(tmp_path / "gates" / f"gate-{index}", index, ratio=ratio, seed=index)
    for _ in range(2):
        assert main(["history", "add", str(tmp_path / "gates"), "--db", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "40 points, 2 anchor comparisons; skipped 0 already there" in out
    assert "0 points, 0 anchor comparisons; skipped 42 already there" in out
    assert main(["history", "check", "--db", postgres_url]) == 1
    assert "; 1 cumulative regression against the anchor (1 timing)" in capsys.readouterr().out
