import numpy as np
import numpy.typing as npt

def select_simd(highest: int) -> int: ...

def sqeuclidean(
    X: npt.NDArray[np.floating],
    Y: npt.NDArray[np.floating],
    out: npt.NDArray[np.floating],
    symmetric: bool,
    expansion: bool,
    n_threads: int,
    stream: bool = False,
) -> None: ...

def fused_expansion(d: int, itemsize: int) -> bool: ...
