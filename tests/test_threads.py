"""n_threads follows scikit-learn's rule."""

import os

import pytest

from fastgd import _threads


def test_none_means_default_and_respects_omp_num_threads(monkeypatch):
    assert _threads.resolve_n_threads(None) == _threads.default_n_threads() >= 1


def test_negative_counts_from_all_cpus():
    cpus = _threads.available_cpus()
    assert _threads.resolve_n_threads(-1) == cpus
    assert _threads.resolve_n_threads(-2) == max(1, cpus - 1)
    assert _threads.resolve_n_threads(-10_000) == 1


def test_positive_counts_are_taken_as_given():
    assert _threads.resolve_n_threads(1) == 1
    assert _threads.resolve_n_threads(7) == 7


@pytest.mark.parametrize("value, error", [(0, ValueError), (2.0, TypeError), (False, TypeError)])
def test_bad_values(value, error):
    with pytest.raises(error, match="n_threads"):
        _threads.resolve_n_threads(value)


def test_available_cpus_matches_affinity():
    if hasattr(os, "sched_getaffinity"):
        assert _threads.available_cpus() == len(os.sched_getaffinity(0))


def test_single_threaded_blas_limits_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
              if lib["user_api"] == "blas"]
    with _threads.single_threaded_blas():
        inside = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                  if lib["user_api"] == "blas"]
        assert inside and all(count == 1 for count in inside)
    after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
             if lib["user_api"] == "blas"]
    assert after == before
