"""
Projected gradient descent on a ratings matrix with a missing entry
===================================================================

The first tutorial fastgd grew from: a 4 x 3 ratings matrix (users x items) with one
rating missing, written NaN, is factorised as ``A ≈ W @ H`` at rank 2 by gradient descent
on the root-mean-square error over the observed ratings, with ``W`` and ``H`` clamped at 0
after every step (projected gradient descent: a non-negative factorisation). The missing
rating is then read off ``W @ H``.

The tutorial writes the loop by hand with autograd; :func:`fastgd.factorize` runs the same
iterations (lr 0.01, 10000 steps) in compiled code.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastgd

# The ratings, float32 as the tutorial builds them; A[0, 0] is missing.
A = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float32).T
A[0, 0] = np.nan

# The tutorial's start: |N(0, 1)| factors, H drawn first.
rs = np.random.RandomState(0)
H0 = np.abs(rs.randn(2, 3))
W0 = np.abs(rs.randn(4, 2))

result = fastgd.factorize(A, 2, init=(W0, H0), optimizer="gd", lr=0.01, n_iter=10000,
                          nonneg=True, loss="rmse")
print(f"RMSE over the observed ratings: {result.loss_history[0]:.4f} at the start, "
      f"{result.loss_history[-1]:.4f} after {result.n_iter} steps")
print("A, with the missing rating as NaN:")
print(A)
print("W @ H, rounded: the missing A[0, 0] is predicted as", result.reconstruct().round()[0, 0])
print(result.reconstruct().round())

# %%
# The loss falls quickly, then slowly as the factors settle:

figure, axes = plt.subplots(figsize=(6, 3.5), layout="constrained")
axes.semilogy(result.loss_history)
axes.set_xlabel("iteration")
axes.set_ylabel("RMSE over the observed ratings")
axes.set_title("Projected gradient descent, lr 0.01")
plt.show()

# %%
# The same loop in NumPy, as the tutorial writes it with autograd, takes one Python
# iteration per step with several temporaries each; ``fastgd bench --kernel factorize``
# measures both on your machine.
