"""The busy-machine case of ``fastgd bench --busy``: each kernel family and factorize with
the default threads and with one thread, while other processes keep every core busy.

    fastgd bench --busy
"""

from fastgd.benchmarks import busy


def test_busy_machine_rows():
    rows = busy.run(rounds=1)
    assert [row["case"] for row in rows] == list(busy.CASES)
    for row in rows:
        assert row["default"] > 0 and row["one thread"] > 0
        assert row["ratio"] == row["default"] / row["one thread"]
