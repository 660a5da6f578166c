"""Build the compiled kernels of fastgd.

Every ``src_c/_<family>.pyx`` becomes the private module ``fastgd._ext._<family>``.
Metadata lives in ``pyproject.toml``; this file only describes the extensions.

Environment switches
--------------------
FASTGD_DEBUG_BUILD=1
    Bounds, wraparound and initialisation checks on, ``-O0 -g``: for hunting a
    crash, never for a release.
FASTGD_DISABLE_OPENMP=1
    Build without OpenMP even where the compiler has it.
"""

import os
import runpy
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy
from Cython import __version__ as cython_version
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SOURCE_DIR = "src_c"
DEBUG_BUILD = os.environ.get("FASTGD_DEBUG_BUILD", "0") == "1"

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def compiler_kind(compiler):
    return "msvc" if compiler.compiler_type == "msvc" else "unix"


def optimisation_flags(kind):
    """Portable optimisation: never -march=native, never -ffast-math.

    NaN means "missing" in this package, so the compiler must keep IEEE
    semantics; -ffp-contract=off keeps results independent of whether the
    target CPU has FMA.
    """
    if kind == "msvc":
        return ["/Od", "/Zi"] if DEBUG_BUILD else ["/O2", "/fp:precise"]
    if DEBUG_BUILD:
        return ["-O0", "-g"]
    return ["-O3", "-fno-math-errno", "-ffp-contract=off"]


def openmp_flags(kind):
    if kind == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def compiler_supports_openmp(compiler, compile_flags, link_flags):
    """Compile and link a tiny OpenMP program with the build's own compiler."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe_openmp.c")
        with open(source, "w") as handle:
            handle.write(OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_flags)
            # LDFLAGS too: a sanitizer build's objects need its runtime to link.
            compiler.link_executable(
                objects, "probe_openmp", output_dir=tmp,
                extra_postargs=link_flags + shlex.split(os.environ.get("LDFLAGS", "")),
            )
        except Exception:
            return False
    return True


def compiler_description(compiler):
    executable = getattr(compiler, "compiler_so", None) or [compiler.compiler_type]
    program = executable[0]
    try:
        version = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[0]
    except Exception:
        version = program
    return version


def c_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BuildExtWithOpenMP(build_ext):
    """Probe OpenMP and set portable flags for the compiler actually used; compile the
    modules in parallel (one per CPU) unless ``--parallel``/``-j`` says otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        kind = compiler_kind(self.compiler)
        compile_flags = optimisation_flags(kind)
        link_flags = []
        omp_compile, omp_link = openmp_flags(kind)
        if os.environ.get("FASTGD_DISABLE_OPENMP", "0") == "1":
            have_openmp = False
            reason = "FASTGD_DISABLE_OPENMP=1"
        else:
            have_openmp = compiler_supports_openmp(self.compiler, omp_compile, omp_link)
            reason = "the compiler could not build an OpenMP program"
        if have_openmp:
            compile_flags += omp_compile
            link_flags += omp_link
        else:
            message = (
                f"\n{'*' * 72}\nWARNING: fastgd is being built WITHOUT OpenMP ({reason}).\n"
                "The kernels will run on one thread; n_threads is accepted but has no effect.\n"
                f"{'*' * 72}\n"
            )
            print(message, file=sys.stderr)
        info_macros = [
            ("FASTGD_BUILD_COMPILER", c_string(compiler_description(self.compiler))),
            ("FASTGD_BUILD_CFLAGS", c_string(" ".join(compile_flags))),
            ("FASTGD_BUILD_CYTHON", c_string(cython_version)),
            ("FASTGD_BUILD_NUMPY", c_string(numpy.__version__)),
            ("FASTGD_BUILD_PLATFORM", c_string(sysconfig.get_platform())),
        ]
        for ext in self.extensions:
            ext.extra_compile_args = compile_flags + ext.extra_compile_args
            ext.extra_link_args = link_flags + ext.extra_link_args
            ext.define_macros = ext.define_macros + info_macros
        super().build_extensions()


CODES_SOURCE = "fastgd/_codes.py"
CODES_DIR = "build/generated"


def write_codes_header():
    """Write fastgd_codes.h, the C enums of the codes in fastgd/_codes.py (the one place
    they are defined), into CODES_DIR (rewritten only when its text changes, so that an
    unchanged build stays up to date); returns CODES_DIR."""
    text = runpy.run_path(str(ROOT / CODES_SOURCE))["c_header"]()
    header = ROOT / CODES_DIR / "fastgd_codes.h"
    if not header.exists() or header.read_text() != text:
        header.parent.mkdir(parents=True, exist_ok=True)
        header.write_text(text)
    return CODES_DIR


def extensions():
    compiler_directives = {
        "language_level": 3,
        "boundscheck": DEBUG_BUILD,
        "wraparound": DEBUG_BUILD,
        "initializedcheck": DEBUG_BUILD,
        "cdivision": not DEBUG_BUILD,
        "embedsignature": True,
    }
    codes_dir = write_codes_header()
    # The C headers and the Cython declarations (.pxd) the modules share.
    headers = sorted((ROOT / SOURCE_DIR).glob("*.h")) + sorted((ROOT / SOURCE_DIR).glob("*.pxd"))
    modules = []
    for source in sorted((ROOT / SOURCE_DIR).glob("_*.pyx")):
        modules.append(
            Extension(
                f"fastgd._ext.{source.stem}",
                [f"{SOURCE_DIR}/{source.name}"],
                include_dirs=[numpy.get_include(), SOURCE_DIR, codes_dir],
                depends=[f"{SOURCE_DIR}/{header.name}" for header in headers]
                + [CODES_SOURCE, f"{codes_dir}/fastgd_codes.h"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
            )
        )
    return cythonize(
        modules,
        include_path=[SOURCE_DIR],
        compiler_directives=compiler_directives,
        build_dir="build/cython",
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtWithOpenMP})
