"""A fresh process's first touch of fastgd (``fastgd bench --first-call``): ``import
fastgd`` against ``import numpy`` alone, and each kernel's first call against its later
calls, every case in processes of its own. The targets: the import at most 1.5x NumPy's, a
first call within 2x of the later ones.

A first call also pays the operating system's first touch of memory no call has used yet:
each page of a fresh output (or of an ``np.zeros`` array the call writes first) costs a page
fault. The table counts them, and shows the first/later ratio of NumPy's nearest equivalent
operation, run in processes of its own, which pays the same.
"""

import os
import statistics
import subprocess
import sys

CASES = {
    # case: (inputs, fastgd's call, NumPy's nearest equivalent)
    "sqeuclidean 1000x500x32": (
        "X = rng.standard_normal((1000, 32)); Y = rng.standard_normal((500, 32))",
        "fastgd.sqeuclidean(X, Y)", "X @ Y.T"),
    "sqeuclidean 1000x500x32, out= given": (
        "X = rng.standard_normal((1000, 32)); Y = rng.standard_normal((500, 32)); "
        "out = np.full((1000, 500), 1.0)",
        "fastgd.sqeuclidean(X, Y, out=out)", "np.matmul(X, Y.T, out=out)"),
    "cdist euclidean 1000x500x32": (
        "X = rng.standard_normal((1000, 32)); Y = rng.standard_normal((500, 32))",
        "fastgd.cdist(X, Y, 'euclidean')", "np.sqrt(np.abs(X @ Y.T))"),
    "argkmin 500x4000x32 k=5": (
        "X = rng.standard_normal((500, 32)); Y = rng.standard_normal((4000, 32))",
        "fastgd.argkmin(X, Y, k=5)", "np.argpartition(X @ Y.T, 5, axis=1)"),
    "masked_loss_grad 1000x500 30% NaN k=8": (
        "A = rng.standard_normal((1000, 500)); A[rng.random(A.shape) < 0.3] = np.nan; "
        "W = rng.standard_normal((1000, 8)); H = rng.standard_normal((8, 500))",
        "fastgd.masked_loss_grad(A, W, H)", "np.nansum((W @ H - A) ** 2)"),
    "adagrad_update 1e5, zero state": (
        "p = rng.standard_normal(10**5); g = rng.standard_normal(10**5); "
        "G = np.zeros(10**5)",
        "fastgd.adagrad_update(p, g, G, lr=1e-3)",
        "np.add(G, g * g, out=G); np.subtract(p, 1e-3 * g / np.sqrt(G), out=p)"),
}

LATER_CALLS = 20

_CHILD = """
import resource, statistics, sys, time
started = time.perf_counter()
import numpy as np
numpy_imported = time.perf_counter()
import fastgd
fastgd_imported = time.perf_counter()
rng = np.random.default_rng(0)
{inputs}
def call():
    {call}
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0
times, counts = [], []
for _ in range({calls}):
    before, start = faults(), time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
    counts.append(faults() - before)
print(numpy_imported - started, fastgd_imported - started, times[0],
      statistics.median(times[1:]), counts[0], statistics.median(counts[1:]))
"""


def _package_parent():
    """The directory holding the fastgd this process imported: the fresh processes start
    there, so that `python -c` (which puts its working directory first on sys.path) imports
    that fastgd, never a source tree in this process's working directory."""
    import fastgd

    return os.path.dirname(os.path.dirname(os.path.abspath(fastgd.__file__)))


def _fresh_process(inputs, call):
    code = _CHILD.format(inputs=inputs, call=call, calls=LATER_CALLS + 1)
    if sys.platform == "win32":
        code = code.replace("import resource,", "resource = None\nimport")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=_package_parent(), timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the fresh process failed:\n{result.stderr}")
    return [float(value) for value in result.stdout.split()]


def run(*, rounds=3, cases=tuple(CASES)):
    """Time each case's first and later calls in ``rounds`` fresh processes each.

    Parameters
    ----------
    rounds : int, default 3
        Fresh processes per case and per library; each value is the median over them.
    cases : sequence of str, default every case of CASES

    Returns
    -------
    dict
        ``"import"``: the median times of ``import numpy`` and of ``import numpy`` then
        ``import fastgd`` (seconds) and their ratio; ``"rows"``: one dict per case, with
        fastgd's ``"first"`` and ``"later"`` call (seconds), their ``"ratio"``, the page
        faults of the first call and of a later one, and NumPy's equivalent's
        ``"numpy ratio"`` and page faults.

    Examples
    --------
    >>> from fastgd.benchmarks import first_call
    >>> result = first_call.run(rounds=1, cases=["adagrad_update 1e5, zero state"])
    >>> result["rows"][0]["ratio"] > 0 and result["import"]["ratio"] > 1
    True
    """
    unknown = [case for case in cases if case not in CASES]
    if unknown:
        raise ValueError(f"cases must be among {', '.join(CASES)}; got {unknown}")
    rows, imports = [], []
    for case in cases:
        inputs, fastgd_call, numpy_call = CASES[case]
        ours = [_fresh_process(inputs, fastgd_call) for _ in range(rounds)]
        theirs = [_fresh_process(inputs, numpy_call) for _ in range(rounds)]
        imports += [(numpy_time, both_time) for numpy_time, both_time, *_ in ours + theirs]
        first, later, first_faults, later_faults = (
            statistics.median(values) for values in list(zip(*ours, strict=True))[2:])
        numpy_first, numpy_later, numpy_first_faults, numpy_later_faults = (
            statistics.median(values) for values in list(zip(*theirs, strict=True))[2:])
        rows.append({"case": case, "first": first, "later": later, "ratio": first / later,
                     "first faults": first_faults, "later faults": later_faults,
                     "numpy ratio": numpy_first / numpy_later,
                     "numpy first faults": numpy_first_faults,
                     "numpy later faults": numpy_later_faults})
    numpy_time = statistics.median(numpy_time for numpy_time, _ in imports)
    both_time = statistics.median(both_time for _, both_time in imports)
    return {"import": {"numpy": numpy_time, "numpy then fastgd": both_time,
                       "ratio": both_time / numpy_time},
            "rows": rows}


def format_table(result):
    """The result of run() as Markdown: the import line, then a table of the cases."""
    imported = result["import"]
    lines = [f"import numpy: {imported['numpy'] * 1e3:.1f} ms; import numpy, fastgd: "
             f"{imported['numpy then fastgd'] * 1e3:.1f} ms ({imported['ratio']:.2f}x)",
             "",
             "| case | first call | later calls | first / later | page faults, first / later "
             "| NumPy's equivalent: first / later, page faults |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['case']} | {row['first'] * 1e3:.3f} ms | "
                     f"{row['later'] * 1e3:.3f} ms | {row['ratio']:.2f}x | "
                     f"{row['first faults']:.0f} / {row['later faults']:.0f} | "
                     f"{row['numpy ratio']:.2f}x, {row['numpy first faults']:.0f} / "
                     f"{row['numpy later faults']:.0f} |")
    return "\n".join(lines)
