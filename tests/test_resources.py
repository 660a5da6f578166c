"""Resources: 20000 small calls of every kernel, and 20000 calls that raise, grow the
resident memory by no more than a small bound (no leak per call), measured in a fresh
process after a warm-up."""

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = """
    import numpy as np, scipy.sparse, fastgd

    def rss_bytes():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    A = np.where(rng.random((12, 9)) < 0.5, rng.standard_normal((12, 9)), np.nan)
    W, H = rng.standard_normal((12, 3)), rng.standard_normal((3, 9))
    plan = fastgd.observed(A)
    S = scipy.sparse.csr_matrix(np.nan_to_num(A))
    p, g, G, v = np.ones(50), np.ones(50), np.zeros(50), np.zeros(50)
    counts = np.array([0, 2, 2]), np.array([1, 5]), np.array([1.0, 2.0])
    opt = fastgd.Adagrad([p.copy()], lr=0.01)

    def raises(call):
        try:
            call()
        except (ValueError, TypeError):
            return
        raise AssertionError("expected an error")

    CALLS = {
        "sqeuclidean": lambda: fastgd.sqeuclidean(X),
        "sqeuclidean X, Y": lambda: fastgd.sqeuclidean(X, X[:7]),
        "argkmin": lambda: fastgd.argkmin(X, k=3),
        "nearest": lambda: fastgd.nearest(X, X[:7]),
        "masked_loss_grad small": lambda: fastgd.masked_loss_grad(A, W, H),
        "masked_loss_grad plan": lambda: fastgd.masked_loss_grad(plan, W, H, method="sparse"),
        "masked_loss_grad dense": lambda: fastgd.masked_loss_grad(A, W, H, method="dense"),
        "masked_loss_grad sparse": lambda: fastgd.masked_loss_grad(S, W, H),
        "masked_residual": lambda: fastgd.masked_residual(plan, W, H),
        "observed": lambda: fastgd.observed(A),
        "ObservedEntries": lambda: fastgd.ObservedEntries(*counts, (2, 6)),
        "adagrad_update": lambda: fastgd.adagrad_update(p, g, G, lr=1e-9),
        "adagrad_update lists": lambda: fastgd.adagrad_update([p], [g], [G], lr=1e-9),
        "adagrad_update general": lambda: fastgd.adagrad_update(p, g.tolist(), G, lr=1e-9),
        "sgd_update": lambda: fastgd.sgd_update(p, g, v, lr=1e-9, momentum=0.5),
        "Adagrad.step": lambda: opt.step([g]),
        "factorize": lambda: fastgd.factorize(plan, 2, n_iter=3, random_state=0),
        "raises sqeuclidean": lambda: raises(lambda: fastgd.sqeuclidean(X, X[:, :2])),
        "raises adagrad": lambda: raises(lambda: fastgd.adagrad_update(p, g, G, lr=-1.0)),
        "raises adagrad lists": lambda: raises(
            lambda: fastgd.adagrad_update([p, p], [g, g], [G, v], lr=0.1)),
        "raises masked": lambda: raises(lambda: fastgd.masked_loss_grad(A, W.T, H)),
        "raises ObservedEntries": lambda: raises(
            lambda: fastgd.ObservedEntries(counts[0], np.array([1, 9]), counts[2], (2, 6))),
        "raises factorize": lambda: raises(lambda: fastgd.factorize(plan, 2, lr=-1.0)),
    }
    worst = {}
    for name, call in CALLS.items():
        for _ in range(2000):  # warm-up: caches, arenas, first-call imports
            call()
        before = rss_bytes()
        for _ in range(20000):
            call()
        worst[name] = rss_bytes() - before
    print(worst)
    grown = {name: bytes_ for name, bytes_ in worst.items() if bytes_ > BOUND}
    assert not grown, grown
    print("no growth")
"""

# 20000 calls leaking even 8 bytes each would grow the RSS by 160 KB; allocator noise
# (a page or two of an arena) stays well below this.
BOUND = 512 * 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_no_memory_growth_over_20000_calls_of_each_kernel():
    code = f"import os\nBOUND = {BOUND}\n" + textwrap.dedent(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in sys.path if p and os.path.isdir(os.path.join(p, "fastgd")))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=900, cwd=os.sep, env=env)
    assert result.returncode == 0 and "no growth" in result.stdout, (
        result.stdout + result.stderr)
