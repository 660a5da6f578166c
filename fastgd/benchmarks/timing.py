"""Interleaved timing: every round calls each function in turn (A B C, B C A, C A B, ...),
and the medians over rounds are compared, so that a noisy, shared machine slows every peer
alike, and no function always runs first after the others have filled the caches."""

import statistics
import time


def interleaved_medians(functions, rounds, round_seconds=0.01, settle=0.0, settled=None):
    """name -> median seconds per call.

    Each function is called once to warm up (first touch, BLAS initialisation), then in
    every round each is repeated so that the first function lasts about round_seconds;
    each round starts one function further along.
    ``settle`` seconds of sleep before the turn of each function named in ``settled``
    (default: all) let idle BLAS threads stop spinning before a multi-threaded call:
    OpenBLAS's workers spin for about 2**28 cycles after each call and slow down any
    other threads on the same cores.
    """
    for function in functions.values():
        function()
    first = next(iter(functions.values()))
    start = time.perf_counter()
    first()
    repeats = max(1, int(round_seconds / max(time.perf_counter() - start, 1e-7)))
    times = {name: [] for name in functions}
    names = list(functions)
    for round_number in range(rounds):
        start_at = round_number % len(names)
        for name in names[start_at:] + names[:start_at]:
            function = functions[name]
            if settle and (settled is None or name in settled):
                time.sleep(settle)
            start = time.perf_counter()
            for _ in range(repeats):
                function()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(values) for name, values in times.items()}
