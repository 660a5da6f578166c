import numpy as np
import numpy.typing as npt

DIVISIONS: tuple[str, ...]
UPDATE_DISPATCH: object

def select_simd(highest: int) -> int: ...
def select_division(method: str) -> str: ...
def fma_sqrt_lanes(
    a: npt.NDArray[np.float64], root_candidate: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]] | None: ...
def overlapping(
    written: list[npt.NDArray[np.generic]], read: list[npt.NDArray[np.generic]]
) -> bool: ...
def sorted_starts(starts: list[int]) -> list[int]: ...
def set_thread_counts(default_cap: int, available_cpus: int, max_threads: int) -> None: ...

def adagrad_update(
    params: list[npt.NDArray[np.floating]],
    grads: list[npt.NDArray[np.floating]],
    accums: list[npt.NDArray[np.floating]],
    rate: float,
    eps: float,
    eps_mode: int,
    weight_decay: float,
    maximize: bool,
    lower_bound: float,
    n_threads: int,
    parallel_min_elements: int,
) -> None: ...
def sgd_update(
    params: list[npt.NDArray[np.floating]],
    grads: list[npt.NDArray[np.floating]],
    velocities: list[npt.NDArray[np.floating]] | None,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    lower_bound: float,
    n_threads: int,
    parallel_min_elements: int,
) -> None: ...
def bandwidth_floor(
    param: npt.NDArray[np.floating],
    grad: npt.NDArray[np.floating],
    accum: npt.NDArray[np.floating],
    n_threads: int = 1,
    parallel_min_elements: int = 0,
    accum2: npt.NDArray[np.floating] | None = None,
) -> None: ...
def adam_update(
    params: list[npt.NDArray[np.floating]],
    grads: list[npt.NDArray[np.floating]],
    exp_avgs: list[npt.NDArray[np.floating]],
    exp_avg_sqs: list[npt.NDArray[np.floating]],
    max_exp_avg_sqs: list[npt.NDArray[np.floating]] | None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
    step: int,
    lower_bound: float,
    n_threads: int,
    parallel_min_elements: int,
    counter: npt.NDArray[np.int64] | None = None,
) -> None: ...
def rmsprop_update(
    params: list[npt.NDArray[np.floating]],
    grads: list[npt.NDArray[np.floating]],
    square_avgs: list[npt.NDArray[np.floating]],
    momentum_buffers: list[npt.NDArray[np.floating]] | None,
    grad_avgs: list[npt.NDArray[np.floating]] | None,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    lower_bound: float,
    n_threads: int,
    parallel_min_elements: int,
    counter: npt.NDArray[np.int64] | None = None,
) -> None: ...
def fast_path_threads(n_threads: int | None) -> int | None: ...
def adam_fast(params: object, grads: object, exp_avgs: object, exp_avg_sqs: object,
              max_exp_avg_sqs: object, lr: object, betas: object, eps: object,
              weight_decay: object, decoupled: object, amsgrad: object, maximize: object,
              step: object, lower_bound: object, n_threads: object,
              parallel_min_elements: int, counter: object = None) -> bool: ...
def rmsprop_fast(params: object, grads: object, square_avgs: object,
                 momentum_buffers: object, grad_avgs: object, lr: object, alpha: object,
                 eps: object, weight_decay: object, momentum: object, centered: object,
                 maximize: object, lower_bound: object, n_threads: object,
                 parallel_min_elements: int, counter: object = None) -> bool: ...
