"""show_config(), the fastgd command line, and the runnable examples in the docstrings."""

import doctest
import io
import os
import subprocess
import sys

import pytest

import fastgd
import fastgd._backend
import fastgd._config
import fastgd.distances
import fastgd.gradcheck
import fastgd.masked
import fastgd.optim
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


@pytest.mark.parametrize(
    "module",
    [fastgd, fastgd._backend, fastgd._config, fastgd.distances, fastgd.gradcheck,
     fastgd.masked, fastgd.optim],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
