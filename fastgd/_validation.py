"""The input contract shared by every kernel and by both backends.

float32 stays float32 and float64 stays float64; integers and booleans become
float64 (float16 becomes float32); a float32/float64 mix computes in float64.
Complex, object, string, datetime and extended-precision inputs are refused
with a TypeError; wrong shapes with a ValueError. Every message names the
argument, what was expected and what was given. Inputs are never modified:
conversions make copies, and ``out`` may not share memory with any input.
"""

import math
import numbers
import sys
import threading

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# as_contiguous_in_scratch keeps copies of at most this many bytes in buffers of the
# calling thread, reused from call to call.
SCRATCH_MAX_BYTES = 16 << 20
_scratch = threading.local()


def _describe(value):
    return f"{type(value).__name__}" if not isinstance(value, np.ndarray) else "ndarray"


def float_dtype_of(array, name):
    """The dtype fastgd computes ``array`` in, or TypeError naming ``name``."""
    dtype = array.dtype
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "f":
        if dtype.itemsize == 2:
            return np.dtype(np.float32)
        if dtype.itemsize in (4, 8):
            return dtype.newbyteorder("=")
    hint = ""
    if dtype.kind == "f":
        hint = ": convert it explicitly, e.g. .astype(np.float64)"
    elif dtype.kind == "O":
        hint = (": a pandas column with missing values (pd.NA)? Pass "
                ".to_numpy(dtype=float, na_value=np.nan)")
    raise TypeError(
        f"{name} must hold real numbers (float32, float64, integer or bool); "
        f"got dtype {dtype} ({dtype.kind!r} kind){hint}"
    )


def is_masked_array(value):
    """Whether value is a numpy.ma.MaskedArray, without importing numpy.ma (16 ms, which
    would land on a kernel's first call): none exists before its class does. numpy.ma may
    be in sys.modules half imported (another thread importing it), without the class yet."""
    masked_array = getattr(sys.modules.get("numpy.ma"), "MaskedArray", None)
    return masked_array is not None and isinstance(value, masked_array)


def as_float_array(value, name, ndim, shape_hint):
    """``value`` as an ndarray of a supported float dtype (no copy when it already is one).

    Parameters
    ----------
    value : array_like
    name : str
        The argument's name, for error messages.
    ndim : int
        The required number of dimensions.
    shape_hint : str
        The expected shape in words, e.g. ``"(n_samples, n_features)"``.
    """
    if type(value).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} must be a dense array here; got a scipy.sparse "
                        f"{type(value).__name__}: pass {name}.toarray()")
    if is_masked_array(value):
        raise TypeError(
            f"{name} must not be a MaskedArray here (numpy.ma: its mask would be ignored); "
            f"pass {name}.filled(...) or {name}.data"
        )
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{name} must be a {ndim}-D array of shape {shape_hint}; "
            f"could not convert the given {_describe(value)}: {error}"
        ) from error
    dtype = float_dtype_of(array, name)
    if array.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D array of shape {shape_hint}; "
            f"got a {array.ndim}-D array of shape {array.shape}"
        )
    if array.dtype != dtype:
        array = array.astype(dtype)
    return array


def result_dtype(*arrays):
    """float64 if any array is float64, else float32."""
    return np.result_type(*[a.dtype for a in arrays])


def as_contiguous(array, dtype):
    """``array`` as C-contiguous, aligned and native-order in ``dtype``: a copy if it is not
    already (a C-contiguous but misaligned array, e.g. from np.frombuffer at an odd offset,
    is copied too: the compiled loops load whole elements)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.aligned:
        array = array.copy()
    return array


def as_contiguous_in_scratch(array, dtype, slot):
    """as_contiguous, but a copy (of at most SCRATCH_MAX_BYTES) goes into the calling
    thread's scratch buffer number ``slot``, which the thread's next call with that slot
    overwrites: for an input the caller uses only until it returns. A fresh copy of a
    strided or Fortran-order input costs more than the copying: glibc hands a freed block
    of this size back to the operating system, which maps and zeroes new pages for the
    next one (a 920 KB column slice took 421 page faults on every call)."""
    dtype = np.dtype(dtype)
    nbytes = array.size * dtype.itemsize
    if (array.dtype == dtype and array.flags.c_contiguous and array.flags.aligned) or (
            nbytes > SCRATCH_MAX_BYTES):
        return as_contiguous(array, dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get(slot)
    if buffer is None or buffer.nbytes < nbytes:
        # An itemsize-aligned start (NumPy's allocations are at least 16-byte aligned).
        buffer = buffers[slot] = np.empty(nbytes, np.uint8)
    copy = buffer[:nbytes].view(dtype).reshape(array.shape)
    np.copyto(copy, array, casting="unsafe")
    return copy


def check_out(out, name, shape, dtype, inputs):
    """Check a caller-supplied output array.

    ``inputs`` maps argument names to the arrays *as the caller passed them*,
    so that an ``out`` aliasing any of them is refused.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None; got {_describe(out)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the result's dtype); got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; got an array with strides {out.strides}")
    if not out.flags.aligned:
        raise ValueError(f"{name} must be aligned (its address a multiple of "
                         f"{out.dtype.itemsize}); got a misaligned array")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable; got a read-only array")
    for input_name, value in inputs.items():
        for array in _arrays_within(value):
            if np.shares_memory(out, array):
                raise ValueError(f"{name} must not share memory with {input_name}")
    return out


def _arrays_within(value):
    """The ndarrays an input holds: itself, or a sparse matrix's or a plan's arrays."""
    if isinstance(value, np.ndarray):
        return [value]
    found = []
    for attribute in ("data", "indices", "indptr", "row", "col", "offsets", "values"):
        item = getattr(value, attribute, None)
        if isinstance(item, np.ndarray):
            found.append(item)
    return found


def check_int(value, name, minimum):
    """An int of at least ``minimum``: TypeError naming ``name`` for what is not an int
    (bools included), ValueError below the minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__} "
                        f"{value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def check_real(value, name, *, minimum=0.0, maximum=math.inf):
    """A real number in [minimum, maximum] as float: TypeError naming ``name`` for what is
    not a real number (bools included), ValueError for NaN, inf or out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    value = float(value)
    if not (minimum <= value <= maximum) or not math.isfinite(value):
        bounds = f">= {minimum}" if maximum == math.inf else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bounds} and finite; got {value}")
    return value


def check_flag(value, name):
    """A bool (Python's or NumPy's) as bool; TypeError naming ``name`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__}")
    return bool(value)


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
