"""The sqeuclidean ratio table: fastgd against each peer, interleaved in one process.

Every round times fastgd and each peer once, one after the other (A B C A B C ...);
the table shows fastgd's median time and each peer's median divided by it
(above 1: fastgd is faster). Usage: python bench/sqeuclidean_ratios.py [--rounds N]

With all threads, every call is preceded by a pause (--settle seconds): after a
multi-threaded call, OpenBLAS's idle workers spin for about 2^28 cycles before they
sleep, and whatever runs next on the same cores (an OpenMP kernel, or the BLAS of
another library) would be timed against them.
"""

import argparse
import contextlib
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from sqeuclidean_cases import DTYPES, PEER_NAMES, SHAPES, make_data, peers

import fastgd


def interleaved_medians(functions, args, rounds, settle=0.0):
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            if settle:
                time.sleep(settle)
            start = time.perf_counter()
            function(*args)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def blas_threads(limit):
    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", choices=["1", "all", "both"], default="both")
    parser.add_argument("--settle", type=float, default=0.25,
                        help="seconds of pause before each call with all threads")
    arguments = parser.parse_args(argv)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"# fastgd {fastgd.__version__}, backend {fastgd.get_backend()}, {cpu}, "
          f"{os.cpu_count()} CPUs, medians of {arguments.rounds} interleaved rounds")
    settings = {"1": [1], "all": [-1], "both": [1, -1]}[arguments.threads]
    names = PEER_NAMES
    header = ["case", "threads", "fastgd ms"] + [f"vs {n}" for n in names if n != "fastgd"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n_threads in settings:
        with blas_threads(1 if n_threads == 1 else None):
            for shape in SHAPES:
                for dtype in DTYPES:
                    X, Y = make_data(*shape, dtype)
                    functions = peers(n_threads)
                    for function in functions.values():  # warm up: first touch, BLAS init
                        function(X, Y)
                    settle = arguments.settle if n_threads != 1 else 0.0
                    medians = interleaved_medians(functions, (X, Y), arguments.rounds, settle)
                    base = medians["fastgd"]
                    cells = [
                        f"{'x'.join(map(str, shape))} {np.dtype(dtype).name}",
                        "1" if n_threads == 1 else "all",
                        f"{base * 1e3:.2f}",
                    ] + [
                        f"{medians[name] / base:.2f}" if name in medians else "n/a"
                        for name in names if name != "fastgd"
                    ]
                    print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
