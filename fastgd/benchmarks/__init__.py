"""``fastgd bench``: fastgd's kernels timed next to their peers, on the user's machine.

One row per kernel, case and thread setting: fastgd's time, and each peer's speedup
(the peer's median time divided by fastgd's, above 1 when fastgd is faster). The calls
are interleaved in one process (A B C A B C ...) and medians of several rounds are
compared. Peers that are not installed are shown as such; the cases live in
``fastgd.benchmarks.sqeuclidean``, ``.masked``, ``.losses``, ``.updates``, ``.adam``,
``.factorize``, ``.recommender``, ``.neighbors`` and ``.metrics``,
which the pytest-benchmark files under ``bench/`` share.
"""

import contextlib
import importlib
import os

from fastgd.benchmarks.timing import interleaved_medians

KERNEL_MODULES = ("sqeuclidean", "masked", "losses", "updates", "adam", "factorize",
                  "recommender", "neighbors", "metrics")
THREAD_SETTINGS = ("1", "all")
NOT_INSTALLED = "not installed"
NOT_APPLICABLE = "n/a"


def case_module(kernel):
    """The module holding one kernel family's cases and peers.

    Examples
    --------
    >>> from fastgd import benchmarks
    >>> benchmarks.case_module("sqeuclidean").KERNEL
    'sqeuclidean'
    """
    return importlib.import_module(f"fastgd.benchmarks.{kernel}")


def case_peer_pairs(module):
    """Every (case, name) of a kernel family where the name (fastgd's own calls first,
    then the peers) takes part in the case: the parametrisation of bench/.

    Examples
    --------
    >>> from fastgd import benchmarks
    >>> benchmarks.case_peer_pairs(benchmarks.case_module("masked"))[:2]
    [('tutorial 4x3 k=2', 'fastgd plan'), ('tutorial 4x3 k=2', 'fastgd dense A')]
    """
    return [(case, name) for case in module.CASES for name in [*module.OURS, *module.PEERS]
            if module.applies(case, name)]


def _thread_context(threads):
    """One thread: BLAS (NumPy's, SciPy's) held to one thread for every peer, when
    threadpoolctl is there to do it. All threads: BLAS as configured."""
    if threads != "1":
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def run(*, quick=False, threads=THREAD_SETTINGS, kernels=KERNEL_MODULES, rounds=None,
        progress=None):
    """Time every case of the chosen kernels against the installed peers.

    Parameters
    ----------
    quick : bool, default False
        Only a few small cases and 3 rounds: a run of well under 30 seconds.
    threads : {"1", "all"} or a sequence of them, default ("1", "all")
        One thread (fastgd with ``n_threads=1``, BLAS and torch held to one thread), all
        threads (``n_threads=-1``, every peer with its default threads), or both.
    kernels : str or sequence of str, default all of KERNEL_MODULES
        Which kernel families: "sqeuclidean", "masked", "losses", "updates", "adam",
        "factorize", "recommender", "neighbors", "metrics".
    rounds : int, optional
        Interleaved rounds per case (default 3 quick, 7 otherwise).
    progress : callable, optional
        Called with each row as soon as it is measured.

    Returns
    -------
    dict
        ``"machine"``: fastgd's configuration (``fastgd.show_config``'s facts), and
        ``"rows"``: one dict per kernel, case and thread setting, with fastgd's median
        seconds per call (``"fastgd"``, per way of calling it) and, per peer, its median
        seconds and speedup, or its status ("not installed", "n/a").

    Examples
    --------
    >>> from fastgd import benchmarks
    >>> result = benchmarks.run(quick=True, threads=["1"], kernels=["updates"], rounds=1)
    >>> row = result["rows"][0]
    >>> row["case"], row["peers"]["numpy"]["speedup"] > 0
    ('1e5 float64', True)
    """
    from fastgd._config import config_info

    threads = [threads] if isinstance(threads, str) else list(threads)
    kernels = [kernels] if isinstance(kernels, str) else list(kernels)
    for setting in threads:
        if setting not in THREAD_SETTINGS:
            raise ValueError(f"threads must hold '1' or 'all'; got {setting!r}")
    for kernel in kernels:
        if kernel not in KERNEL_MODULES:
            raise ValueError(
                f"kernels must be among {', '.join(KERNEL_MODULES)}; got {kernel!r}")
    if rounds is None:
        rounds = 3 if quick else 7
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds!r}")
    rows = []
    for kernel in kernels:
        module = case_module(kernel)
        cases = module.QUICK_CASES if quick else list(module.CASES)
        for setting in threads:
            n_threads = 1 if setting == "1" else -1
            for case in cases:
                # With all threads, fastgd's calls start after a pause where they start
                # threads of their own, so that OpenBLAS's workers (spinning for a while
                # after a peer's BLAS call) do not compete with them. Peers run straight
                # after one another: single-threaded peers are not slowed by a spinning
                # worker, and BLAS peers share one pool. Nor is fastgd's call in a small
                # case, which runs on one thread: a worker spinning on another core leaves
                # it its own (and the small cases' BLAS calls start no workers).
                settle = 0.25 if setting == "all" and module.threaded(case) else 0.0
                with _thread_context(setting):
                    functions = module.peers(case, n_threads)
                    medians = interleaved_medians(functions, rounds,
                                                  round_seconds=0.005 if quick else 0.01,
                                                  settle=settle, settled=module.OURS)
                row = _row(module, case, setting, medians)
                rows.append(row)
                if progress is not None:
                    progress(row)
    return {"machine": config_info(), "rows": rows}


def _row(module, case, setting, medians):
    ours = {name: medians[name] for name in module.OURS if name in medians}
    fastest = min(ours.values())
    peers = {}
    for peer in module.PEERS:
        if not module.applies(case, peer):
            peers[peer] = {"status": NOT_APPLICABLE}
        elif peer not in medians:  # peers() leaves out what it cannot import
            peers[peer] = {"status": NOT_INSTALLED}
        else:
            peers[peer] = {"seconds": medians[peer], "speedup": medians[peer] / fastest}
    return {"kernel": module.KERNEL, "case": case, "threads": setting, "fastgd": ours,
            "peers": peers}


def _duration(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.2f} µs"


def format_tables(result):
    """The rows of ``run`` as one Markdown table per kernel, under a header that names the
    machine, the dispatch levels and the BLAS.

    Examples
    --------
    >>> from fastgd import benchmarks
    >>> result = benchmarks.run(quick=True, threads=["1"], kernels=["updates"], rounds=1)
    >>> print(benchmarks.format_tables(result).splitlines()[-3])  # doctest: +ELLIPSIS
    | 1e5 float64 | 1 | ... |
    """
    info = result["machine"]
    simd = info["simd"] or {}
    lines = [
        f"fastgd {info['fastgd']} ({info['backend']} backend), NumPy {info['numpy']}, "
        f"SciPy {info['scipy']}",
        f"CPU: {info['cpu']}, {os.cpu_count()} CPUs, up to {info['cpu_level']}; dispatch: "
        + (", ".join(f"{kernel} {level}" for kernel, level in simd.items()) or "none"),
        "Speedup = the peer's median time / fastgd's (above 1: fastgd is faster); "
        "calls interleaved in one process.",
    ]
    for blas in info["blas"] or []:
        lines.append(f"BLAS: {blas.get('internal_api')} {blas.get('version')} "
                     f"({blas.get('architecture')}, {blas.get('num_threads')} threads)")
    kernels = []
    for row in result["rows"]:
        if row["kernel"] not in kernels:
            kernels.append(row["kernel"])
    for kernel in kernels:
        rows = [row for row in result["rows"] if row["kernel"] == kernel]
        ours = list(rows[0]["fastgd"])
        peers = list(rows[0]["peers"])
        header = ["case", "threads"] + ours + [f"vs {peer}" for peer in peers]
        lines += ["", f"## {kernel}", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [row["case"], row["threads"]]
            cells += [_duration(row["fastgd"][name]) if name in row["fastgd"] else "-"
                      for name in ours]
            for peer in peers:
                entry = row["peers"][peer]
                cells.append(f"{entry['speedup']:.2f}x" if "speedup" in entry
                             else entry["status"])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
