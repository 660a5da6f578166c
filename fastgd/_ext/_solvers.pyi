import numpy as np
import numpy.typing as npt

def run_iterations(
    indptr: npt.NDArray[np.integer],
    indices: npt.NDArray[np.integer],
    values: npt.NDArray[np.floating],
    W: npt.NDArray[np.floating],
    HT: npt.NDArray[np.floating],
    state_W: npt.NDArray[np.floating],
    state_HT: npt.NDArray[np.floating],
    grad_W: npt.NDArray[np.floating],
    grad_HT: npt.NDArray[np.floating],
    history: npt.NDArray[np.float64],
    n_steps: int,
    loss_code: int,
    l2: float,
    optimizer: int,
    lr: float,
    eps: float,
    eps_mode: int,
    momentum: float,
    nesterov: bool,
    lower_bound: float,
    tol: float,
) -> tuple[int, int]: ...
