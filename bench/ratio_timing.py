"""Timing shared by the ratio tables: interleaved rounds, medians, the machine's name."""

import os
import platform
import time

import numpy as np


def machine():
    """The CPU's model name and the number of CPUs, for the table's header."""
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), cpu)
    return f"{cpu}, {os.cpu_count()} CPUs"


def interleaved_medians(functions, rounds, round_seconds=0.01):
    """name -> median seconds per call. Every round calls each function in turn (A B C A
    B C ...), each repeated so that fastgd's first function lasts about round_seconds."""
    for function in functions.values():  # warm up: first touch, BLAS initialisation
        function()
    first = next(iter(functions.values()))
    start = time.perf_counter()
    first()
    repeats = max(1, int(round_seconds / max(time.perf_counter() - start, 1e-7)))
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(repeats):
                function()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: float(np.median(values)) for name, values in times.items()}
