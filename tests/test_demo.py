"""``fastgd demo``: the tutorials' results, the command line, and the plots."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_peer

from fastgd import cli, demo

RECOVERED = np.array([[5, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]], dtype=float)


def test_demo_reproduces_both_tutorials(backend):
    output = io.StringIO()
    results = demo.main(file=output)
    text = output.getvalue()
    for result in results.values():
        np.testing.assert_array_equal(result.reconstruct().round(), RECOVERED)
    projected, adagrad = results["projected_gd"], results["adagrad"]
    assert projected.n_iter == 10000 and adagrad.n_iter == 2000
    assert (projected.W >= 0).all() and (projected.H >= 0).all()
    # The projected-gradient tutorial prints 0.08655 from step 9000 on.
    assert projected.loss_history[-1] == pytest.approx(0.0865532, abs=2e-6)
    assert adagrad.loss_history[0] == pytest.approx(demo.ADAGRAD_TUTORIAL_INITIAL_LOSS,
                                                    rel=1e-12)
    assert "11.6512688206" in text and "0.0865531" in text
    assert text.count("[  5   4   5 ]") == 2 and "[nan   4   5 ]" in text
    assert "µs per iteration" in text
    assert not demo.TUTORIAL_MATRIX.flags.writeable


def test_learning_rate_frames_follow_adagrad(backend):
    frames = demo.learning_rate_frames(frames=(1, 3))
    W0, H0 = demo.adagrad_start()
    # After one step the sum of squares is g**2 + eps: the rate is lr / sqrt(that).
    from fastgd import masked_loss_grad

    _, dW, dH = masked_loss_grad(demo.TUTORIAL_MATRIX, W0, H0, loss="rmse")
    np.testing.assert_allclose(frames[0][0], 0.1 / np.sqrt(dW ** 2 + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(frames[0][1], 0.1 / np.sqrt(dH ** 2 + 1e-8), rtol=1e-12)
    assert (frames[1][0] <= frames[0][0]).all()  # Adagrad's rates only fall


def test_demo_command_writes_plots(tmp_path, capsys):
    require_peer("matplotlib")
    assert cli.main(["demo", "--plot", str(tmp_path / "plots")]) == 0
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["adagrad_lr_H.png", "adagrad_lr_W.png", "loss_curves.png"]
    for name in written:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "saved" in capsys.readouterr().out


def test_demo_as_installed_command(tmp_path):
    command = [os.path.join(os.path.dirname(sys.executable), "fastgd"), "demo"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Projected gradient descent" in result.stdout and "Adagrad" in result.stdout
