"""fastgd's default thread count on a busy machine: each kernel family and factorize,
timed with ``n_threads=None`` and with ``n_threads=1`` (interleaved) while other
processes, started and stopped here, keep every core busy. The default should cost at
most 1.3x the one-thread time there: threads that wait for a core another process holds
must not make a call slower than not starting them."""

import multiprocessing
import time

import numpy as np

from fastgd.benchmarks.timing import interleaved_medians

CASES = (
    "sqeuclidean 2000x2000x64",
    "masked_loss_grad plan 5000x5000 5% k=32",
    "masked_loss_grad dense 1000x1000 k=16",
    "adagrad_update 1e6 float64",
    "factorize plan 2000x1000 5% k=10, 5 iterations",
)
QUICK_CASES = CASES


def _spin(stop):
    """Keep one core busy until ``stop`` is set."""
    while not stop.is_set():
        for _ in range(100_000):
            pass


class BusyCores:
    """A context in which ``count`` processes (spawned, so fastgd's threads are not
    inherited) keep a core busy each."""

    def __init__(self, count):
        self.count = count

    def __enter__(self):
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._workers = [context.Process(target=_spin, args=(self._stop,), daemon=True)
                         for _ in range(self.count)]
        for worker in self._workers:
            worker.start()
        time.sleep(0.5)  # the spinners are running before anything is timed
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        return False


def calls(case, rng):
    """(default-threads call, one-thread call) of a case, inputs made once."""
    import fastgd

    if case.startswith("sqeuclidean"):
        X = rng.standard_normal((2000, 64))
        return (lambda: fastgd.sqeuclidean(X), lambda: fastgd.sqeuclidean(X, n_threads=1))
    if case.startswith("masked_loss_grad plan"):
        A = _sparse_ratings(rng, 5000, 5000, 0.05)
        W, H = rng.standard_normal((5000, 32)), rng.standard_normal((32, 5000))
        return (lambda: fastgd.masked_loss_grad(A, W, H),
                lambda: fastgd.masked_loss_grad(A, W, H, n_threads=1))
    if case.startswith("masked_loss_grad dense"):
        A = rng.standard_normal((1000, 1000))
        A[rng.random(A.shape) < 0.5] = np.nan
        W, H = rng.standard_normal((1000, 16)), rng.standard_normal((16, 1000))
        return (lambda: fastgd.masked_loss_grad(A, W, H, method="dense"),
                lambda: fastgd.masked_loss_grad(A, W, H, method="dense", n_threads=1))
    if case.startswith("adagrad_update"):
        p, g, G = np.zeros(10**6), rng.standard_normal(10**6), np.zeros(10**6)
        return (lambda: fastgd.adagrad_update(p, g, G, lr=1e-9),
                lambda: fastgd.adagrad_update(p, g, G, lr=1e-9, n_threads=1))
    if case.startswith("factorize"):
        A = _sparse_ratings(rng, 2000, 1000, 0.05)
        return (lambda: fastgd.factorize(A, 10, n_iter=5, random_state=0),
                lambda: fastgd.factorize(A, 10, n_iter=5, random_state=0, n_threads=1))
    raise ValueError(f"case must be one of {', '.join(CASES)}; got {case!r}")


def _sparse_ratings(rng, m, n, density):
    import fastgd

    nnz = int(m * n * density)
    flat = rng.choice(m * n, size=nnz, replace=False)
    return fastgd.observed((flat // n, flat % n, rng.random(nnz) * 4 + 1, (m, n)))


def run(*, rounds=5, busy=None, cases=CASES):
    """Time every case with the default threads and with one thread, the cores kept busy.

    Parameters
    ----------
    rounds : int, default 5
        Interleaved rounds per case.
    busy : int, optional
        Processes keeping cores busy (default: one per CPU this process may use).
    cases : sequence of str, default CASES

    Returns
    -------
    list of dict
        One per case: ``"case"``, ``"default"`` and ``"one thread"`` (median seconds per
        call) and ``"ratio"`` (default over one thread: at most 1.3 is the target).

    Examples
    --------
    >>> from fastgd.benchmarks import busy
    >>> rows = busy.run(rounds=1, busy=1, cases=["adagrad_update 1e6 float64"])
    >>> rows[0]["ratio"] > 0
    True
    """
    from fastgd import _threads

    if busy is None:
        busy = _threads.available_cpus()
    rng = np.random.default_rng(0)
    prepared = {case: calls(case, rng) for case in cases}
    rows = []
    with BusyCores(busy):
        for case, (default, one) in prepared.items():
            medians = interleaved_medians({"default": default, "one thread": one}, rounds,
                                          round_seconds=0.05)
            rows.append({"case": case, **medians,
                         "ratio": medians["default"] / medians["one thread"]})
    return rows


def format_table(rows):
    """The rows as a Markdown table."""
    lines = ["| case | default n_threads | n_threads=1 | default / one thread |",
             "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['case']} | {row['default'] * 1e3:.2f} ms | "
                     f"{row['one thread'] * 1e3:.2f} ms | {row['ratio']:.2f}x |")
    return "\n".join(lines)
