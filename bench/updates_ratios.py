"""The fused-update ratio table: one Adagrad step by fastgd and each peer, interleaved.

Every round times each callable once (A B C A B C ...); the table shows fastgd's median
time and each peer's median divided by it (above 1: fastgd is faster), one thread.
Usage: python bench/updates_ratios.py [--rounds N]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ratio_timing import interleaved_medians, machine
from updates_cases import CASES, PEER_NAMES, peers

import fastgd


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    arguments = parser.parse_args(argv)
    print(f"# fastgd {fastgd.__version__}, {machine()}, one thread, medians of {arguments.rounds} "
          "interleaved rounds; repeat count chosen per case so a round lasts about 10 ms")
    others = [n for n in PEER_NAMES if n != "fastgd.adagrad_update"]
    print("| case | fastgd µs | " + " | ".join(f"vs {n}" for n in others) + " |")
    print("|" + "---|" * (2 + len(others)))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for case, shapes in CASES.items():
            medians = interleaved_medians(peers(shapes), arguments.rounds)
            base = medians["fastgd.adagrad_update"]
            cells = [f"{medians[n] / base:.2f}" if n in medians else "n/a" for n in others]
            print(f"| {case} | {base * 1e6:.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
