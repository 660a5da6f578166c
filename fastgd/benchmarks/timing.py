"""Interleaved timing: every round calls each function in turn (A B C, B C A, C A B, ...),
and the medians over rounds are compared, so that a noisy, shared machine slows every peer
alike, and no function always runs first after the others have filled the caches."""

import statistics
import time


def interleaved_medians(functions, rounds, round_seconds=0.01, settle=0.0, settled=None):
    """name -> median seconds per call.

    Each function is called once to warm up (first touch, BLAS initialisation) and once
    more to time it; then in every round each is repeated so that it lasts about
    round_seconds (at least once: a peer a thousand times slower than fastgd is not
    repeated a thousand times); each round starts one function further along.
    ``settle`` seconds of sleep before the turn of each function named in ``settled``
    (default: all) let idle BLAS threads stop spinning before a multi-threaded call:
    OpenBLAS's workers spin for about 2**28 cycles after each call and slow down any
    other threads on the same cores.
    """
    repeats = {}
    for name, function in functions.items():
        function()
        start = time.perf_counter()
        function()
        repeats[name] = max(1, int(round_seconds / max(time.perf_counter() - start, 1e-7)))
    times = {name: [] for name in functions}
    names = list(functions)
    for round_number in range(rounds):
        start_at = round_number % len(names)
        for name in names[start_at:] + names[:start_at]:
            function = functions[name]
            if settle and (settled is None or name in settled):
                time.sleep(settle)
            start = time.perf_counter()
            for _ in range(repeats[name]):
                function()
            times[name].append((time.perf_counter() - start) / repeats[name])
    return {name: statistics.median(values) for name, values in times.items()}
