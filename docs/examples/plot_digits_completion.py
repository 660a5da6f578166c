"""
Completing images with missing pixels, and classifying them by distance
=======================================================================

Real data, bundled with scikit-learn (no download): the 1797 handwritten digits of
``sklearn.datasets.load_digits``, 8 x 8 grey levels each, one image per row of a
1797 x 64 matrix. We hide 40% of the pixels at random (NaN), complete the matrix with
:func:`fastgd.factorize` at rank 12, and compare the completion with filling each pixel
with its column's mean. Then :func:`fastgd.sqeuclidean` assigns every completed image to
the nearest class centre (a nearest-centroid classifier) without forming anything larger
than the 1797 x 10 distance matrix.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import fastgd

digits = load_digits()
X = digits.data / 16.0  # grey levels in [0, 1]
rng = np.random.default_rng(0)
hidden = rng.random(X.shape) < 0.4
A = np.where(hidden, np.nan, X)

result = fastgd.factorize(A, 12, loss="mse", lr=0.1, n_iter=500, random_state=0)
completed = np.clip(result.reconstruct(), 0.0, 1.0)
column_means = np.nanmean(A, axis=0)
mean_filled = np.where(hidden, column_means, X)


def rmse_on_hidden(estimate):
    return float(np.sqrt(np.mean((estimate - X)[hidden] ** 2)))


print(f"RMSE on the hidden pixels: column means {rmse_on_hidden(mean_filled):.4f}, "
      f"rank-12 factorisation {rmse_on_hidden(completed):.4f}")

# %%
# Four images: the original, with 40% of its pixels hidden (red), and completed.

grey = plt.get_cmap("gray_r").copy()
grey.set_bad("tab:red")
figure, axes = plt.subplots(3, 4, figsize=(6, 4.8), layout="constrained")
for column, index in enumerate([0, 7, 42, 1000]):
    for row, (image, title) in enumerate([(X, "original"), (A, "40% hidden"),
                                          (completed, "completed")]):
        axis = axes[row, column]
        axis.imshow(image[index].reshape(8, 8), cmap=grey, vmin=0, vmax=1)
        axis.set_xticks([])
        axis.set_yticks([])
        if column == 0:
            axis.set_ylabel(title)
plt.show()

# %%
# A nearest-centroid classifier on the completed images: the class centres come from the
# first half of the images, and the second half is assigned to the nearest centre.

train = np.arange(X.shape[0]) < X.shape[0] // 2
centres = np.stack([completed[train & (digits.target == c)].mean(axis=0)
                    for c in range(10)])
distances = fastgd.sqeuclidean(completed[~train], centres)  # (n_test, 10)
predicted = distances.argmin(axis=1)
accuracy = float(np.mean(predicted == digits.target[~train]))
print(f"nearest-centroid accuracy on the completed test images: {accuracy:.3f}")
