"""The masked loss-and-gradient cases (the masked-kernel issue's sizes) and their peers.

Every peer computes the MSE loss of W @ H over A's observed entries and its gradients
with respect to W and H (autograd: the RMSE of the popular tutorial). fastgd runs twice:
given a plan from fastgd.observed (built once, like the peers' CSR pattern) and given the
dense A with NaN for the missing entries. Beside each float32 case, fastgd's plan on the
same problem in float64 is timed in the same rounds: its column is the float64 time over
the float32 one, the masked-kernel issue's "float32 at most 0.6x the float64 time"
(at least 1.67x), measured side by side rather than from rows minutes apart.

The tutorial's matrix as its text writes it (float32, then transposed: Fortran order) is
a case of its own, with the C-ordered float64 dense call on the same problem beside it
("fastgd C float64"; the neighbours issue's "within 2x": at least 0.5).
"""

import numpy as np

import fastgd
from fastgd import masked
from fastgd.benchmarks import numba_loops

# The tutorial's ratings, transposed: 4 users x 3 items, one missing.
TUTORIAL = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float64).T

# name -> (m, n, k, observed fraction, dtype); 0 for the fraction means the tutorial's A.
CASES = {
    "tutorial 4x3 k=2": (4, 3, 2, 0, np.float64),
    "tutorial 4x3 k=2 f32 Fortran": (4, 3, 2, 0, np.float32),
    "1000x1000 k=16 50%": (1000, 1000, 16, 0.5, np.float64),
    "5000x5000 k=32 5%": (5000, 5000, 32, 0.05, np.float64),
    "5000x5000 k=32 5% f32": (5000, 5000, 32, 0.05, np.float32),
    "20000x20000 k=32 0.5%": (20000, 20000, 32, 0.005, np.float64),
    "20000x20000 k=32 0.5% f32": (20000, 20000, 32, 0.005, np.float32),
}
QUICK_CASES = ["tutorial 4x3 k=2", "1000x1000 k=16 50%"]
KERNEL = "masked_loss_grad"
OURS = ["fastgd plan", "fastgd dense A"]
# The cases whose dense A is in Fortran order.
FORTRAN_CASES = {"tutorial 4x3 k=2 f32 Fortran"}
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["numpy dense", "scipy vectorised", "numba", "autograd", "fastgd float64",
         "fastgd C float64"]
# Dense peers need m x n arrays: only where those are small enough to be a fair peer.
DENSE_MAX_ENTRIES = 5000 * 5000


def applies(case, peer):
    """Whether the peer takes part in the case (dense peers need a small enough m x n,
    autograd runs the tutorial only, fastgd's float64 plan stands beside float32 cases,
    its C-ordered float64 dense call beside Fortran-ordered ones)."""
    m, n, _, fraction, dtype = CASES[case]
    if peer in ("fastgd dense A", "numpy dense"):
        return m * n <= DENSE_MAX_ENTRIES
    if peer == "fastgd C float64":
        return case in FORTRAN_CASES
    if peer == "autograd":
        return fraction == 0
    if peer == "fastgd float64":
        return dtype == np.float32
    return True


def threaded(case):
    """Whether fastgd's calls start threads with ``n_threads=-1``: the dense-A call's
    work (m n k; the plan's, nnz k, is less) is enough for them."""
    m, n, k, _, _ = CASES[case]
    return m * n * k >= masked.PARALLEL_MIN_WORK


def make_problem(m, n, k, fraction, dtype, seed=0):
    """(rows, cols, values, W, H), the entries sorted by row then column, no m x n array."""
    rng = np.random.default_rng(seed)
    if fraction == 0:
        A = TUTORIAL.copy()
        A[0, 0] = np.nan
        rows, cols = np.nonzero(~np.isnan(A))
        values = A[rows, cols]
    else:
        flat = np.unique(rng.integers(0, m * n, size=int(fraction * m * n * 1.002)))
        rows, cols = np.divmod(flat, n)
        values = rng.random(flat.shape[0]) * 4 + 1
    W = rng.random((m, k)) / np.sqrt(k)
    H = rng.random((k, n)) / np.sqrt(k)
    return rows, cols, values.astype(dtype), W.astype(dtype), H.astype(dtype)


def peers(case, n_threads):
    """name -> zero-argument callable returning (loss, dW, dH); peers that are missing
    or do not apply are left out."""
    m, n, k, fraction, dtype = CASES[case]
    rows, cols, values, W, H = make_problem(m, n, k, fraction, dtype)
    plan = fastgd.observed((rows, cols, values, (m, n)))
    result = {"fastgd plan": lambda: fastgd.masked_loss_grad(plan, W, H, n_threads=n_threads)}
    if applies(case, "numpy dense"):
        A = np.full((m, n), np.nan, dtype=dtype)
        A[rows, cols] = values
        mask = ~np.isnan(A)
        A_zeros = np.where(mask, A, 0)
        A_given = np.asfortranarray(A) if case in FORTRAN_CASES else A
        result["fastgd dense A"] = lambda: fastgd.masked_loss_grad(A_given, W, H,
                                                                   n_threads=n_threads)

        def numpy_dense():
            R = np.where(mask, W @ H - A_zeros, 0)
            count = np.count_nonzero(mask)
            return (R * R).sum() / count, (2 / count) * (R @ H.T), (2 / count) * (W.T @ R)

        result["numpy dense"] = numpy_dense
    result["scipy vectorised"] = scipy_vectorised(rows, cols, values, W, H, (m, n))
    numba_peer = numba_csr(rows, cols, values, W, H, (m, n), n_threads)
    if numba_peer is not None:
        result["numba"] = numba_peer
    # Only where it applies: its dense A would be m x n (3.2 GB at 20000 x 20000).
    autograd_peer = (autograd_tutorial(rows, cols, values, W, H, (m, n))
                     if applies(case, "autograd") else None)
    if autograd_peer is not None:
        result["autograd"] = autograd_peer
    if applies(case, "fastgd float64") or applies(case, "fastgd C float64"):
        # The float64 case's own problem (the same entries, before rounding to float32).
        rows64, cols64, values64, W64, H64 = make_problem(m, n, k, fraction, np.float64)
    if applies(case, "fastgd float64"):
        plan64 = fastgd.observed((rows64, cols64, values64, (m, n)))
        result["fastgd float64"] = lambda: fastgd.masked_loss_grad(plan64, W64, H64,
                                                                   n_threads=n_threads)
    if applies(case, "fastgd C float64"):
        A64 = np.full((m, n), np.nan)
        A64[rows64, cols64] = values64
        result["fastgd C float64"] = lambda: fastgd.masked_loss_grad(A64, W64, H64,
                                                                     n_threads=n_threads)
    return result


def scipy_vectorised(rows, cols, values, W, H, shape):
    """The best vectorised SciPy approach: the residuals by einsum over gathered rows of
    W and of H.T, the gradients by sparse-matrix products, the CSR pattern built once."""
    import scipy.sparse

    pattern = scipy.sparse.csr_array((values, (rows, cols)), shape=shape)
    pattern.sort_indices()
    indptr, indices = pattern.indptr, pattern.indices
    entry_rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    observed_values = pattern.data.copy()
    HT = np.ascontiguousarray(H.T)
    count = values.shape[0]

    def gradient():
        r = np.einsum("ij,ij->i", W[entry_rows], HT[indices]) - observed_values
        R = scipy.sparse.csr_array((r, indices, indptr), shape=shape)
        return r @ r / count, (2 / count) * (R @ HT), (2 / count) * (R.T @ W).T

    return gradient


def numba_csr(rows, cols, values, W, H, shape, n_threads):
    """The numba loop over the CSR entries (numba_loops: dH through the entries' CSC
    order, built once with the pattern) for the loss and both gradients; None without
    numba."""
    jitted = numba_loops.loops()
    if jitted is None:
        return None
    import scipy.sparse

    jitted.use_threads(n_threads)
    pattern = scipy.sparse.csr_array((values, (rows, cols)), shape=shape)
    pattern.sort_indices()
    by_row = pattern.indptr
    entry_rows = np.repeat(np.arange(shape[0]), np.diff(by_row))
    # The entries column by column: their places in the CSR order, and their rows.
    by_column_order = np.argsort(pattern.indices, kind="stable")
    by_column = np.concatenate([[0], np.cumsum(np.bincount(pattern.indices,
                                                           minlength=shape[1]))])
    HT = np.ascontiguousarray(H.T)
    residuals = np.empty(values.shape[0], values.dtype)
    dW, dHT = np.empty_like(W), np.empty_like(HT)

    def gradient():
        loss = jitted.masked_loss_grad(by_row, pattern.indices, pattern.data, W, HT,
                                       by_column, entry_rows[by_column_order],
                                       by_column_order, residuals, dW, dHT)
        return loss, dW, dHT.T

    return numba_loops.warmed(gradient)


def autograd_tutorial(rows, cols, values, W, H, shape):
    """The tutorial's cost under autograd: RMSE over the masked entries of W @ H."""
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        return None
    A = np.full(shape, np.nan, dtype=values.dtype)
    A[rows, cols] = values
    mask = ~np.isnan(A)

    def cost(W, H):
        difference = anp.dot(W, H) - A
        return anp.sqrt(anp.mean(difference[mask] ** 2))

    gradient = autograd.value_and_grad(cost, argnum=[0, 1])

    def run():
        value, (dW, dH) = gradient(W, H)
        return value, dW, dH

    return run
