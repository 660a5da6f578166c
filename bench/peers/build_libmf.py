"""Build LIBMF as LIBMF's own Makefile does, for fastgd's recommender benchmark.

The PyPI ``libmf`` package compiles LIBMF's sources without the SSE/AVX and OpenMP flags
of LIBMF's Makefile (and its wrapper changes the defaults), so the benchmark compares
against LIBMF built from the same sources (``src_cpp/mf.cpp`` of the ``libmf`` sdist)
with the Makefile's flags, ``-O3 -pthread -std=c++0x -march=native -DUSEAVX -mavx
-fopenmp -DUSEOMP``, linked with ``libmf_driver.cpp``. Needs pip (to download the sdist)
and g++. Prints the export that points the benchmark at the driver:

    python bench/peers/build_libmf.py
    export FASTGD_LIBMF_DRIVER=...
"""

import pathlib
import subprocess
import sys
import tarfile
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SDIST = "libmf==0.9.2"
FLAGS = ["-O3", "-pthread", "-std=c++0x", "-march=native", "-DUSEAVX", "-mavx",
         "-fopenmp", "-DUSEOMP"]


def main(output=HERE / "build" / "libmf_driver"):
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "--dest", tmp, SDIST], check=True)
        archive = next(pathlib.Path(tmp).glob("libmf-*.tar.gz"))
        with tarfile.open(archive) as sdist:
            sdist.extractall(tmp, filter="data")
        sources = next(pathlib.Path(tmp).glob("libmf-*/src_cpp"))
        subprocess.run(["g++", *FLAGS, f"-I{sources}", str(HERE / "libmf_driver.cpp"),
                        str(sources / "mf.cpp"), "-o", str(output)], check=True)
    print(f"export FASTGD_LIBMF_DRIVER={output}")
    return output


if __name__ == "__main__":
    main(*sys.argv[1:])
