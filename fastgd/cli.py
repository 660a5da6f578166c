"""The ``fastgd`` command line: ``fastgd info``, ``fastgd demo`` and ``fastgd bench``."""

import argparse
import sys


def _info(arguments):
    import fastgd

    fastgd.show_config()
    return 0


def _error(command, message):
    """What argparse's error() prints, for a problem found after parsing; status 2."""
    print(f"fastgd {command}: error: {message}", file=sys.stderr)
    return 2


def _demo(arguments):
    from pathlib import Path

    from fastgd import demo

    if arguments.plot is not None:
        # Before the tutorials run: matplotlib, and a directory the plots can go to.
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _error("demo", "--plot needs matplotlib: pip install 'fastgd[plot]'")
        try:
            Path(arguments.plot).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return _error("demo", f"--plot: cannot make the directory {arguments.plot!r} "
                          f"({error.strerror or error})")
    demo.main(plot_dir=arguments.plot)
    return 0


def _writable_file(path):
    """Why a file cannot be written at ``path`` (an existing file is overwritten), or
    None if it can; without creating it."""
    import os

    if os.path.isdir(path):
        return "it is a directory"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"the directory {directory!r} does not exist"
    if not os.access(path if os.path.exists(path) else directory, os.W_OK):
        return "permission denied"
    return None


def _bench(arguments):
    import json

    from fastgd import benchmarks

    if arguments.json is not None:
        problem = _writable_file(arguments.json)  # before the minutes of measuring
        if problem is not None:
            return _error("bench", f"--json: cannot write {arguments.json!r}: {problem}")
    if arguments.busy:
        from fastgd.benchmarks import busy

        print(busy.format_table(busy.run(rounds=arguments.rounds or 5)))
        return 0
    if arguments.first_call:
        from fastgd.benchmarks import first_call

        print(first_call.format_table(first_call.run(rounds=arguments.rounds or 3)))
        return 0
    threads = arguments.threads or ("1" if arguments.quick else "both")
    threads = {"1": ["1"], "all": ["all"], "both": ["1", "all"]}[threads]
    kernels = arguments.kernel or list(benchmarks.KERNEL_MODULES)

    def progress(row):
        print(f"  measured {row['kernel']} {row['case']} ({row['threads']} thread"
              f"{'' if row['threads'] == '1' else 's'})", file=sys.stderr, flush=True)

    result = benchmarks.run(quick=arguments.quick, threads=threads, kernels=kernels,
                            rounds=arguments.rounds, progress=progress)
    print(benchmarks.format_tables(result))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"\nsaved to {arguments.json}")
    return 0


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def build_parser():
    from fastgd.benchmarks import KERNEL_MODULES

    parser = argparse.ArgumentParser(
        prog="fastgd", description="Compiled kernels for gradient-descent workloads."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser(
        "info", help="show the version, backend, build and threads",
        description="Show what runs fastgd's kernels here: the versions, whether the compiled "
        "kernels or their NumPy twins run, how the extension was built, the instruction-set "
        "level each kernel family uses on this CPU, the default thread count and the BLAS.")
    info.set_defaults(run=_info)
    demo = commands.add_parser(
        "demo", help="factorise the tutorials' 4 x 3 matrix with a missing entry",
        description="Reproduce the two autograd tutorials fastgd grew from: projected "
        "gradient descent and Adagrad on a 4 x 3 ratings matrix with one missing entry.")
    demo.add_argument("--plot", metavar="DIR",
                      help="also save the loss curves and Adagrad's learning-rate heatmaps "
                      "as PNG files in DIR (needs matplotlib)")
    demo.set_defaults(run=_demo)
    bench = commands.add_parser(
        "bench", help="time fastgd's kernels next to the installed peers",
        description="Time fastgd's kernels next to the installed peers (SciPy, scikit-learn, "
        "NumPy, torch, autograd), interleaved in one process; each speedup is the peer's "
        "median time divided by fastgd's.")
    bench.add_argument("--quick", action="store_true",
                       help="a few small cases, 3 rounds, one thread unless --threads "
                       "says otherwise: well under 30 seconds")
    bench.add_argument("--threads", choices=["1", "all", "both"], default=None,
                       help="one thread, all threads, or both (the default; one thread "
                       "with --quick)")
    bench.add_argument("--kernel", action="append", choices=KERNEL_MODULES,
                       help="only this kernel family (repeatable; default all)")
    bench.add_argument("--rounds", type=_positive_int, default=None,
                       help="interleaved rounds per case (default 3 with --quick, else 7)")
    bench.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    bench.add_argument("--busy", action="store_true",
                       help="instead, time each kernel with the default threads against one "
                       "thread while other processes keep every core busy")
    bench.add_argument("--first-call", action="store_true",
                       help="instead, time import fastgd against import numpy, and each "
                       "kernel's first call against its later ones, in fresh processes")
    bench.set_defaults(run=_bench)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.version:
        import fastgd

        print(fastgd.__version__)
        return 0
    if arguments.command is None:
        parser.print_help(sys.stderr)
        return 2
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
