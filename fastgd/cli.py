"""The ``fastgd`` command line: ``fastgd info``."""

import argparse
import sys


def _info(arguments):
    import fastgd

    fastgd.show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastgd", description="Compiled kernels for gradient-descent workloads."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="show the version, backend, build and threads")
    info.set_defaults(run=_info)
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
