"""The sizes of this CPU's caches, as Linux reports them: the kernels' tiles and their
choice of stores follow them."""

import functools
import glob
import os

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@functools.cache
def cache_bytes(level, default):
    """The size in bytes of CPU 0's data (or unified) cache of ``level`` (1, 2 or 3), as
    /sys/devices/system/cpu reports it; ``default`` where it does not (other systems).
    An L3 shared by several cores is reported whole."""
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(index, "level")) as file:
                found_level = file.read().strip()
            with open(os.path.join(index, "type")) as file:
                kind = file.read().strip()
            with open(os.path.join(index, "size")) as file:
                size = file.read().strip()
        except OSError:
            continue
        if found_level == str(level) and kind in ("Unified", "Data") and size[:-1].isdigit():
            return int(size[:-1]) * _UNITS.get(size[-1], 0) or default
    return default
