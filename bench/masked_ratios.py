"""The masked loss-and-gradient ratio table: fastgd against each peer, interleaved.

The table shows fastgd's median times (given a plan from fastgd.observed, built once like
the peers' CSR; and given the dense A with NaN) and each peer's median divided by the
faster of the two (above 1: fastgd is faster), one thread, BLAS held to one thread.
Usage: python bench/masked_ratios.py [--rounds N] [--cases SUBSTRING]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from masked_cases import CASES, PEER_NAMES, peers
from ratio_timing import interleaved_medians, machine

import fastgd


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", default="", help="only the cases whose name holds this")
    arguments = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    print(f"# fastgd {fastgd.__version__}, backend {fastgd.get_backend()}, {machine()}; "
          f"one thread, medians of {arguments.rounds} interleaved rounds")
    ours = ["fastgd plan", "fastgd dense A"]
    others = [name for name in PEER_NAMES if name not in ours]
    header = ["case"] + [f"{name} ms" for name in ours] + [f"vs {name}" for name in others]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with threadpool_limits(limits=1):
        for case in CASES:
            if arguments.cases not in case:
                continue
            medians = interleaved_medians(peers(case), arguments.rounds)
            base = min(medians[name] for name in ours if name in medians)
            cells = [case] + [
                f"{medians[name] * 1e3:.4f}" if name in medians else "n/a" for name in ours
            ] + [
                f"{medians[name] / base:.2f}" if name in medians else "n/a" for name in others
            ]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
