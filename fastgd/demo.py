"""``fastgd demo``: the two autograd tutorials this package grew from, run by fastgd.

Both factorise the same 4 x 3 ratings matrix with one missing entry at rank 2: one by
projected gradient descent (lr 0.01, 10000 steps, W and H clamped at 0), one by Adagrad
from a deliberately poor start (H0 = -5|N(0, 1)|, lr 0.1, eps 1e-8 added to the sum of
squares, 2000 steps). Each prints its loss along the way, the recovered matrix next to
A, and its time; ``plot_dir`` also saves the loss curves and heatmaps of Adagrad's
per-entry learning rates (matplotlib).
"""

import sys
import time
from pathlib import Path

import numpy as np

from fastgd.factorization import factorize

# The tutorials' matrix, float32 as they build it, with A[0, 0] missing.
TUTORIAL_MATRIX = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float32).T
TUTORIAL_MATRIX[0, 0] = np.nan
TUTORIAL_MATRIX.flags.writeable = False
RANK = 2

PROJECTED_GD = {"optimizer": "gd", "lr": 0.01, "n_iter": 10000, "nonneg": True}
ADAGRAD = {"optimizer": "adagrad", "lr": 0.1, "eps": 1e-8, "eps_mode": "accumulate",
           "n_iter": 2000}
# The Adagrad tutorial's initial cost, printed there for its seed-0 start.
ADAGRAD_TUTORIAL_INITIAL_LOSS = 11.651268820608442
# The iterations at which the learning-rate heatmaps are drawn.
RATE_FRAMES = (1, 5, 20, 50, 100, 200, 500, 2000)


def projected_gd_start(seed=0):
    """|N(0, 1)| factors, H drawn first, as in the projected-gradient tutorial."""
    rs = np.random.RandomState(seed)
    H0 = np.abs(rs.randn(RANK, TUTORIAL_MATRIX.shape[1]))
    W0 = np.abs(rs.randn(TUTORIAL_MATRIX.shape[0], RANK))
    return W0, H0


def adagrad_start(seed=0):
    """The Adagrad tutorial's poor start: H0 = -5|N(0, 1)| first, then W0 = |N(0, 1)|."""
    rs = np.random.RandomState(seed)
    H0 = -5 * np.abs(rs.randn(RANK, TUTORIAL_MATRIX.shape[1]))
    W0 = np.abs(rs.randn(TUTORIAL_MATRIX.shape[0], RANK))
    return W0, H0


def run_tutorial(settings, start):
    """(result, seconds) of one tutorial's factorisation, timed end to end (after a call
    without iterations, which loads what a first call loads)."""
    factorize(TUTORIAL_MATRIX, RANK, init=start, **{**settings, "n_iter": 0})
    began = time.perf_counter()
    result = factorize(TUTORIAL_MATRIX, RANK, init=start, **settings)
    return result, time.perf_counter() - began


def _report(title, result, seconds, file):
    print(title, file=file)
    print(f"  {'iteration':>9}  loss (RMSE over the observed entries)", file=file)
    n = result.n_iter
    for i in sorted({0, 1, 10, 100, n // 10, n // 2, n}):
        print(f"  {i:>9}  {result.loss_history[i]:.10f}", file=file)
    print(f"  {'A':<22}W @ H, rounded", file=file)
    recovered = result.reconstruct().round()
    for observed_row, recovered_row in zip(TUTORIAL_MATRIX, recovered, strict=True):
        left = " ".join(f"{v:>3.0f}" for v in observed_row)
        right = " ".join(f"{v:>3.0f}" for v in recovered_row)
        print(f"  [{left} ]{'':<8}[{right} ]", file=file)
    print(f"  time: {seconds * 1e3:.2f} ms for {n} iterations, end to end "
          f"({seconds / max(n, 1) * 1e6:.2f} µs per iteration)\n", file=file)


def learning_rate_frames(frames=RATE_FRAMES):
    """Adagrad's per-entry learning rates of W and H after each of ``frames`` steps (one
    run per frame; the runs share their first steps bitwise)."""
    W0, H0 = adagrad_start()
    rates = []
    for n in frames:
        result = factorize(TUTORIAL_MATRIX, RANK, init=(W0, H0), **{**ADAGRAD, "n_iter": n})
        rates.append(result.effective_lr())
    return rates


def save_plots(directory, projected, adagrad):
    """Write loss_curves.png, adagrad_lr_W.png and adagrad_lr_H.png into ``directory``;
    returns their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError:
        raise ImportError("fastgd demo --plot needs matplotlib: "
                          "pip install 'fastgd[plot]'") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []

    figure, axes = plt.subplots(figsize=(6, 4), layout="constrained")
    axes.semilogy(projected.loss_history, label="projected gradient descent (lr 0.01)")
    axes.semilogy(adagrad.loss_history, label="Adagrad from a poor start (lr 0.1)")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss: RMSE over the observed entries (log scale)")
    axes.legend()
    paths.append(directory / "loss_curves.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    rates = learning_rate_frames()
    for index, name in enumerate("WH"):
        frames = [pair[index] for pair in rates]
        norm = LogNorm(vmin=min(f.min() for f in frames), vmax=max(f.max() for f in frames))
        rows, cols = frames[0].shape
        # Two rows of panels, each sized to its matrix; constrained layout keeps the figure's
        # title clear of the panels' titles and trims the margins.
        per_row = (len(frames) + 1) // 2
        figure, axes = plt.subplots(
            2, per_row, layout="constrained", squeeze=False,
            figsize=(0.6 * cols * per_row + 1.5, 2 * (0.6 * rows + 0.5) + 0.5))
        axes = axes.ravel()
        for axis in axes[len(frames):]:
            axis.set_visible(False)
        for axis, frame, n in zip(axes, frames, RATE_FRAMES, strict=False):
            image = axis.imshow(frame, norm=norm, cmap="viridis")
            for (i, j), value in np.ndenumerate(frame):
                # Dark text on viridis's bright (yellow, green) cells, light on its dark ones.
                colour = "black" if norm(value) > 0.55 else "white"
                axis.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7,
                          color=colour)
            axis.set_title(f"iteration {n}", fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
        figure.suptitle(f"Adagrad's per-entry learning rate of {name} (log colour scale)")
        figure.colorbar(image, ax=list(axes), shrink=0.8)
        paths.append(directory / f"adagrad_lr_{name}.png")
        figure.savefig(paths[-1], dpi=100)
        plt.close(figure)
    return paths


def main(plot_dir=None, file=None):
    """Run both tutorials, print what they print, and optionally save the plots.

    Parameters
    ----------
    plot_dir : str or Path, optional
        Where to write the PNG plots (needs matplotlib).
    file : file-like, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    dict
        ``{"projected_gd": FactorizationResult, "adagrad": FactorizationResult}``.

    Examples
    --------
    >>> import io
    >>> from fastgd import demo
    >>> results = demo.main(file=io.StringIO())
    >>> results["adagrad"].reconstruct().round()[0]
    array([5., 4., 5.])
    """
    file = sys.stdout if file is None else file
    print("fastgd demo: the 4 x 3 ratings matrix of the autograd tutorials, A[0, 0] "
          "missing, factorised at rank 2\n", file=file)
    projected, seconds = run_tutorial(PROJECTED_GD, projected_gd_start())
    _report("Projected gradient descent: lr 0.01, 10000 steps, W and H clamped at 0, "
            "from |N(0, 1)| factors (seed 0)", projected, seconds, file)
    adagrad, seconds = run_tutorial(ADAGRAD, adagrad_start())
    _report("Adagrad from a poor start: H0 = -5|N(0, 1)| (seed 0), lr 0.1, eps 1e-8 "
            f"added to the sum of squares, 2000 steps (the tutorial's initial loss: "
            f"{ADAGRAD_TUTORIAL_INITIAL_LOSS})", adagrad, seconds, file)
    if plot_dir is not None:
        for path in save_plots(plot_dir, projected, adagrad):
            print(f"saved {path}", file=file)
    return {"projected_gd": projected, "adagrad": adagrad}
