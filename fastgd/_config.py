"""show_config(): what fastgd runs on, for bug reports and benchmark tables."""

from __future__ import annotations

import platform
import sys
from typing import TextIO

import numpy as np

from fastgd import _backend, _blas, _threads
from fastgd._version import __version__


def config_info():
    """The facts show_config() prints, as a dict of plain values."""
    import scipy
    info = {
        "fastgd": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "backend": _backend.get_backend(),
        "backend_reason": _backend.backend_reason(),
        "extension": None,
        "openmp": False,
        "cpu": cpu_model(),
        "cpu_features": None,
        "cpu_level": None,
        "cpu_dispatch": None,
        "simd": _backend.simd_levels,
        "update_division": _backend.update_division,
        "default_n_threads": _threads.default_n_threads(),
        "forked_child": _threads.in_forked_child,
        "openmp_wait": _backend.openmp_wait,
        "blas": _threads.blas_info(),
        "gemm": None,
    }
    if _backend.ext is not None:
        build = _backend.ext._build_info.build_info()
        info["extension"] = build
        info["openmp"] = build["openmp"]
        cpu = _backend.cpu_info()
        info["cpu_features"] = cpu["features"]
        info["cpu_level"] = cpu["level"]
        info["cpu_dispatch"] = cpu["dispatch"]
        info["gemm"] = _blas.gemm_description()
    return info


def cpu_model():
    """The CPU's model name, as the operating system reports it."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def show_config(file: TextIO | None = None) -> None:
    """Print fastgd's version, backend, build and threading configuration.

    Parameters
    ----------
    file : file-like, optional
        Where to print; ``sys.stdout`` by default.

    Examples
    --------
    >>> import io
    >>> import fastgd
    >>> buffer = io.StringIO()
    >>> fastgd.show_config(file=buffer)
    >>> "backend" in buffer.getvalue()
    True
    """
    info = config_info()
    file = sys.stdout if file is None else file
    build = info["extension"]
    lines = [
        f"fastgd {info['fastgd']}",
        f"  python:   {info['python']} on {info['platform']}",
        f"  numpy:    {info['numpy']}   scipy: {info['scipy']}",
        f"  backend:  {info['backend']} ({info['backend_reason']})",
    ]
    if build is None:
        lines.append("  build:    no compiled extension")
    else:
        if info["cpu_dispatch"]:
            cpu_text = (f"{', '.join(info['cpu_features']) or 'no listed features'}"
                        f" (up to {info['cpu_level']})")
            simd_note = ("the best this CPU supports, chosen when fastgd loads; "
                         "FASTGD_SIMD=baseline (or avx2) lowers it")
        else:
            cpu_text = ("features not read: this build has the baseline loops only (no runtime"
                        " dispatch: not x86-64 with GCC or Clang, or built with"
                        " FASTGD_NO_DISPATCH)")
            simd_note = "FASTGD_SIMD=scalar lowers it"
        lines += [
            f"  compiler: {build['compiler']}",
            f"  cflags:   {build['cflags']}",
            f"  built with Cython {build['cython']}, NumPy {build['numpy']}"
            f" for {build['platform']}",
            f"  CPU:      {info['cpu']}; {cpu_text}",
            "  vectors:  "
            + ", ".join(f"{kernel} {level}" for kernel, level in info["simd"].items())
            + f" ({simd_note})",
            "  Adagrad:  float64 square roots "
            + ("two in three by multiply-adds, the rest and the divisions by the divide unit "
               "(faster on this CPU, the same results)"
               if info["update_division"] == "divider+fma"
               else "and divisions by the CPU's divide unit"),
        ]
    lines.append(
        f"  OpenMP:   {'on' if info['openmp'] else 'off'}"
        f" (default n_threads: {info['default_n_threads']}"
        + ("; one thread: this process was made by fork()" if info["forked_child"] else "")
        + (f"; idle threads wait by {info['openmp_wait']}"
           if info["openmp"] and info["openmp_wait"] else "")
        + ")"
    )
    if info["gemm"] is not None:
        lines.append(f"  GEMM:     {info['gemm']}")
    if info["blas"] is None:
        lines.append('  BLAS:     not shown: pip install "fastgd[threads]" (threadpoolctl) to see '
                     "the BLAS libraries loaded (and to hold SciPy's to one thread in fastgd's "
                     "parallel regions, where the kernels call it)")
    else:
        for lib in info["blas"]:
            lines.append(
                f"  BLAS:     {lib.get('internal_api')} {lib.get('version')}"
                f" ({lib.get('threading_layer')}, {lib.get('num_threads')} threads,"
                f" {lib.get('architecture')}) {lib.get('filepath')}"
            )
    print("\n".join(lines), file=file)
