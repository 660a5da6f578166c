"""The sizes of this CPU's caches, as Linux reports them: the kernels' tiles and their
choice of stores follow them."""

import functools
import os

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_CPU0_CACHES = "/sys/devices/system/cpu/cpu0/cache"


@functools.cache
def _data_cache_sizes():
    """{level: bytes} of CPU 0's data and unified caches (read once, on first need: a
    kernel's first call pays it, not ``import fastgd``); empty on other systems."""
    sizes = {}
    try:
        entries = sorted(entry.path for entry in os.scandir(_CPU0_CACHES)
                         if entry.name.startswith("index"))
    except OSError:
        return sizes
    for index in entries:
        try:
            with open(os.path.join(index, "level")) as file:
                level = file.read().strip()
            with open(os.path.join(index, "type")) as file:
                kind = file.read().strip()
            with open(os.path.join(index, "size")) as file:
                size = file.read().strip()
        except OSError:
            continue
        if kind in ("Unified", "Data") and level.isdigit() and size[:-1].isdigit():
            sizes.setdefault(int(level), int(size[:-1]) * _UNITS.get(size[-1], 0))
    return sizes


def cache_bytes(level, default):
    """The size in bytes of CPU 0's data (or unified) cache of ``level`` (1, 2 or 3), as
    /sys/devices/system/cpu reports it; ``default`` where it does not (other systems).
    An L3 shared by several cores is reported whole."""
    return _data_cache_sizes().get(level) or default
