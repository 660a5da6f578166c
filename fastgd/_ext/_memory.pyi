import numpy as np
import numpy.typing as npt

def empty_aligned(
    shape: int | tuple[int, ...], dtype: npt.DTypeLike
) -> npt.NDArray[np.generic]: ...
