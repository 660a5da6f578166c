"""The fresh-process case of ``fastgd bench --first-call``: ``import fastgd`` against
``import numpy``, and each kernel's first call against its later calls.

    fastgd bench --first-call
"""

from fastgd.benchmarks import first_call


def test_first_call_rows():
    result = first_call.run(rounds=1)
    assert [row["case"] for row in result["rows"]] == list(first_call.CASES)
    for row in result["rows"]:
        assert row["first"] > 0 and row["later"] > 0
        assert row["ratio"] == row["first"] / row["later"]
        assert row["later faults"] >= 0 and row["numpy ratio"] > 0
    imported = result["import"]
    assert imported["numpy then fastgd"] > imported["numpy"] > 0
    table = first_call.format_table(result)
    assert table.count("\n| ") == len(first_call.CASES) + 1
