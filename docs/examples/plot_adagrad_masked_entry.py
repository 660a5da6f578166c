"""
Adagrad with a masked entry: per-entry learning rates
=====================================================

The second tutorial fastgd grew from factorises the same 4 x 3 ratings matrix, one entry
missing, with Adagrad from a deliberately poor start (``H0 = -5 |N(0, 1)|``): each entry
of ``W`` and ``H`` gets its own learning rate, ``lr / sqrt(G)``, where ``G`` sums that
entry's squared gradients (plus ``eps`` at every step: ``eps_mode="accumulate"``, the
tutorial's convention). Entries with large early gradients slow down, others keep moving.

:func:`fastgd.factorize` runs the 2000 steps in compiled code;
:meth:`fastgd.FactorizationResult.effective_lr` gives the per-entry rates after the last
step, which we draw after a few step counts.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

import fastgd

A = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float32).T
A[0, 0] = np.nan

rs = np.random.RandomState(0)
H0 = -5 * np.abs(rs.randn(2, 3))
W0 = np.abs(rs.randn(4, 2))
settings = {"optimizer": "adagrad", "lr": 0.1, "eps": 1e-8, "eps_mode": "accumulate"}

result = fastgd.factorize(A, 2, init=(W0, H0), n_iter=2000, **settings)
print(f"RMSE: {result.loss_history[0]:.4f} at the poor start, "
      f"{result.loss_history[-1]:.4f} after {result.n_iter} steps")
print("W @ H, rounded (A[0, 0] was missing):")
print(result.reconstruct().round())

# %%
# The loss over the iterations:

figure, axes = plt.subplots(figsize=(6, 3.5), layout="constrained")
axes.semilogy(result.loss_history)
axes.set_xlabel("iteration")
axes.set_ylabel("RMSE over the observed ratings")
axes.set_title("Adagrad from a poor start, lr 0.1")
plt.show()

# %%
# The per-entry learning rates of ``H`` after 1, 20, 200 and 2000 steps (each run starts
# from the same point, so the runs share their first steps exactly):

frames = (1, 20, 200, 2000)
rates = [fastgd.factorize(A, 2, init=(W0, H0), n_iter=n, **settings).effective_lr()[1]
         for n in frames]
norm = LogNorm(vmin=min(r.min() for r in rates), vmax=max(r.max() for r in rates))
figure, axes = plt.subplots(1, len(frames), figsize=(9, 2.4), layout="constrained")
for axis, rate, n in zip(axes, rates, frames, strict=True):
    image = axis.imshow(rate, norm=norm, cmap="viridis")
    for (i, j), value in np.ndenumerate(rate):
        axis.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=8,
                  color="black" if norm(value) > 0.55 else "white")
    axis.set_title(f"after {n} steps", fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
figure.colorbar(image, ax=list(axes), shrink=0.8, label="lr / sqrt(G)")
plt.show()
