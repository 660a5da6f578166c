"""show_config(), the fastgd command line, and the runnable examples in the docstrings."""

import doctest
import io
import os
import subprocess
import sys

import pytest
from conftest import require_peer

import fastgd
import fastgd._backend
import fastgd._config
import fastgd.benchmarks
import fastgd.demo
import fastgd.distances
import fastgd.factorization
import fastgd.gradcheck
import fastgd.masked
import fastgd.optimize
import fastgd.updates
from fastgd import cli


def test_show_config_reports_what_the_issue_asks_for():
    buffer = io.StringIO()
    fastgd.show_config(file=buffer)
    text = buffer.getvalue()
    assert f"fastgd {fastgd.__version__}" in text
    assert f"backend:  {fastgd.get_backend()}" in text
    assert "numpy:" in text
    assert "OpenMP:" in text and "default n_threads" in text
    if fastgd._backend.ext is not None:
        build = fastgd._backend.ext._build_info.build_info()
        assert build["compiler"] in text
        assert "-march=native" not in build["cflags"]
        assert "-ffast-math" not in build["cflags"]
        assert f"Cython {build['cython']}" in text
        assert build["openmp"], "CI's compiler has OpenMP; a build without it is a regression"
    assert "BLAS:" in text


def test_config_info_is_plain_data():
    info = fastgd._config.config_info()
    assert info["fastgd"] == fastgd.__version__
    assert info["backend"] in ("compiled", "numpy")
    assert isinstance(info["default_n_threads"], int)


def test_cli_info_in_process(capsys):
    assert cli.main(["info"]) == 0
    assert "fastgd" in capsys.readouterr().out


def test_cli_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == fastgd.__version__
    assert cli.main([]) == 2
    with pytest.raises(SystemExit):
        cli.main(["no-such-command"])


@pytest.mark.parametrize("command", [["fastgd", "info"], [sys.executable, "-m", "fastgd", "info"]])
def test_cli_as_installed_commands(command, tmp_path):
    if command[0] == "fastgd":
        command[0] = os.path.join(os.path.dirname(sys.executable), "fastgd")
    # From an empty directory: `python -m` puts the working directory on sys.path.
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"fastgd {fastgd.__version__}" in result.stdout


@pytest.mark.parametrize("arguments, threads", [
    (["--quick"], ["1"]),
    (["--quick", "--threads", "both"], ["1", "all"]),
    ([], ["1", "all"]),
    (["--threads", "all"], ["all"]),
])
def test_cli_bench_threads_default_to_one_for_quick(monkeypatch, capsys, arguments, threads):
    """--quick measures one thread unless --threads asks for more (its 30 s promise)."""
    from fastgd import benchmarks

    asked = {}

    def run(**kwargs):
        asked.update(kwargs)
        return {"machine": {}, "rows": []}

    monkeypatch.setattr(benchmarks, "run", run)
    monkeypatch.setattr(benchmarks, "format_tables", lambda result: "")
    assert cli.main(["bench", *arguments]) == 0
    assert asked["threads"] == threads and asked["quick"] == ("--quick" in arguments)


def test_cli_bench_first_call_prints_the_fresh_process_table(capsys, monkeypatch, tmp_path):
    """fastgd bench --first-call: the import line and one row per case, each measured in
    fresh processes that import the fastgd this process imported, not a source tree in the
    working directory (as in a checkout)."""
    from fastgd.benchmarks import first_call

    (tmp_path / "fastgd").mkdir()
    (tmp_path / "fastgd" / "__init__.py").write_text("raise ImportError('a source tree')\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--first-call", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("import numpy: ")
    for case in first_call.CASES:
        assert f"| {case} | " in out
    with pytest.raises(ValueError, match="cases must be among"):
        first_call.run(rounds=1, cases=["sqeuclidean 7x7"])


def test_cli_bench_prints_ratios_and_saves_json(capsys, tmp_path):
    import json

    from fastgd.benchmarks import updates

    path = tmp_path / "bench.json"
    status = cli.main(["bench", "--quick", "--kernel", "updates", "--threads", "1",
                       "--rounds", "1", "--json", str(path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "## adagrad_update" in out and "vs torch fused" in out
    saved = json.loads(path.read_text())
    assert saved["machine"]["fastgd"] == fastgd.__version__
    assert [row["case"] for row in saved["rows"]] == updates.QUICK_CASES
    for row in saved["rows"]:
        assert row["threads"] == "1"
        assert set(row["fastgd"]) == set(updates.OURS)
        assert all(seconds > 0 for seconds in row["fastgd"].values())
        assert list(row["peers"]) == updates.PEERS
        fastest = min(row["fastgd"].values())
        for peer, entry in row["peers"].items():
            if "speedup" in entry:
                assert entry["speedup"] == pytest.approx(entry["seconds"] / fastest)
            else:
                assert entry["status"] in ("not installed", "n/a")
                assert entry["status"] != "n/a" or not updates.applies(row["case"], peer)


def test_bench_shows_missing_peers_as_not_installed(monkeypatch):
    from fastgd.benchmarks import updates

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    result = fastgd.benchmarks.run(quick=True, threads="1", kernels="updates", rounds=1)
    assert [row["threads"] for row in result["rows"]] == ["1"] * len(updates.QUICK_CASES)
    for row in result["rows"]:
        assert row["peers"]["torch fused"] == {"status": "not installed"}
        assert "speedup" in row["peers"]["numpy"]
    assert "not installed" in fastgd.benchmarks.format_tables(result)
    assert updates.applies("1000 x 100 float64", "bandwidth floor") is False


def test_bench_settles_only_before_threaded_calls(monkeypatch):
    """With all threads, the pause before each of fastgd's calls (for BLAS workers to stop
    spinning) is taken only in the cases where fastgd's call starts threads."""
    from fastgd import benchmarks
    from fastgd.benchmarks import timing, updates

    pauses = []
    monkeypatch.setattr(timing.time, "sleep", pauses.append)
    pauses_by_case = {}

    def progress(row):
        pauses_by_case[row["case"]] = len(pauses)
        pauses.clear()

    benchmarks.run(quick=True, threads="all", kernels="updates", rounds=2, progress=progress)
    assert pauses_by_case == {case: 2 * len(updates.OURS) if updates.threaded(case) else 0
                              for case in updates.QUICK_CASES}
    assert pauses_by_case["1e3 float64"] == 0 and pauses_by_case["1e5 float64"] == 4
    benchmarks.run(quick=True, threads="1", kernels="updates", rounds=1, progress=progress)
    assert set(pauses_by_case.values()) == {0}


def test_bench_threaded_cases_are_those_with_work_for_threads():
    from fastgd import factorization, masked
    from fastgd.benchmarks import KERNEL_MODULES, case_module
    from fastgd.updates import PARALLEL_MIN_ELEMENTS

    cases = {kernel: case_module(kernel).CASES for kernel in KERNEL_MODULES}
    threaded = {kernel: {case for case in cases[kernel] if case_module(kernel).threaded(case)}
                for kernel in KERNEL_MODULES}
    # The digits case's 1797 x 10 x 64 and the tutorials are one thread's work.
    assert threaded["sqeuclidean"] == set(cases["sqeuclidean"]) - {
        "1797x10x64 float64 column slice"}
    assert threaded["masked"] == set(cases["masked"]) - {"tutorial 4x3 k=2",
                                                         "tutorial 4x3 k=2 f32 Fortran"}
    assert threaded["updates"] == {"1e7 float64", "1e5 float64", "1000 x 100 float64"}
    assert 1000 < PARALLEL_MIN_ELEMENTS <= 100_000
    assert threaded["factorize"] == {case for case, (kind, _) in cases["factorize"].items()
                                     if kind == "large"}
    # The tutorials' 11 observed entries at rank 2 run factorize's compiled loop, which
    # is single-threaded.
    assert 11 * 2 <= factorization.SOLVER_LOOP_MAX_WORK <= masked.PARALLEL_MIN_WORK


@pytest.mark.parametrize("kwargs, match", [
    ({"threads": ["2"]}, "threads must hold"),
    ({"kernels": ["fft"]}, "kernels must be among"),
    ({"rounds": 0}, "rounds must be at least 1"),
])
def test_bench_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastgd.benchmarks.run(**kwargs)


def test_cli_bench_rejects_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--rounds", "0"])
    assert "must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--rounds", "many"])
    assert "argument --rounds: must be an integer; got 'many'" in capsys.readouterr().err
    # A --json path that cannot be written is said before anything is measured.
    for path, reason in [(tmp_path / "missing" / "out.json", "does not exist"),
                         (tmp_path, "it is a directory")]:
        assert cli.main(["bench", "--json", str(path)]) == 2
        captured = capsys.readouterr()
        assert "fastgd bench: error: --json: cannot write" in captured.err
        assert reason in captured.err and "measured" not in captured.err
        assert captured.out == ""


def test_cli_demo_refuses_a_plot_directory_it_cannot_make(capsys, tmp_path):
    """Said before the tutorials run, as argparse says its errors (no traceback)."""
    require_peer("matplotlib")
    blocker = tmp_path / "a file"
    blocker.write_text("")
    assert cli.main(["demo", "--plot", str(blocker / "plots")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("fastgd demo: error: --plot: cannot make the directory")
    assert captured.out == ""


@pytest.mark.parametrize(
    "module",
    [fastgd, fastgd._backend, fastgd._config, fastgd.benchmarks, fastgd.demo,
     fastgd.distances, fastgd.factorization, fastgd.gradcheck, fastgd.masked, fastgd.updates,
     fastgd.optimize],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_show_config_without_threadpoolctl_names_the_install(monkeypatch):
    import io

    from fastgd import _threads

    monkeypatch.setattr(_threads, "blas_info", lambda: None)
    buffer = io.StringIO()
    fastgd.show_config(file=buffer)
    assert 'BLAS:     not shown: pip install "fastgd[threads]"' in buffer.getvalue()
