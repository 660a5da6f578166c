"""Arrays whose data start on a cache line (64 bytes).

malloc aligns large blocks to 16 bytes only, so the rows of an output written in vectors
of 64 bytes straddle two cache lines at every store. ``empty_aligned`` allocates the array
through a NumPy memory handler (NEP 49) whose blocks start on a cache line
(aligned_memory.h): the array owns its data like any other (the handler stays with it and
frees it), resize works, and nothing else in the process changes. Like NumPy's own
allocator on Linux, it asks for huge pages for blocks of 4 MiB and more.
"""

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t
from libc.string cimport strncpy

import numpy as np

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void* ctx
        void* (*malloc)(void* ctx, size_t size) noexcept nogil
        void* (*calloc)(void* ctx, size_t nelem, size_t elsize) noexcept nogil
        void* (*realloc)(void* ctx, void* ptr, size_t new_size) noexcept nogil
        void (*free)(void* ctx, void* ptr, size_t size) noexcept nogil

    ctypedef struct PyDataMem_Handler:
        char name[127]
        uint8_t version
        PyDataMemAllocator allocator

    # The handler in force in this context before the call (a new reference).
    object PyDataMem_SetHandler(object handler)

cdef extern from "aligned_memory.h" nogil:
    void* fastgd_aligned_malloc(size_t size)
    void* fastgd_aligned_calloc(size_t count, size_t size)
    void* fastgd_aligned_realloc(void* data, size_t size)
    void fastgd_aligned_free(void* data)
    void fastgd_advise_huge_pages(void* data, size_t size)


cdef void* _malloc(void* ctx, size_t size) noexcept nogil:
    cdef void* data = fastgd_aligned_malloc(size)
    if data != NULL:
        fastgd_advise_huge_pages(data, size)
    return data


cdef void* _calloc(void* ctx, size_t nelem, size_t elsize) noexcept nogil:
    cdef void* data = fastgd_aligned_calloc(nelem, elsize)
    if data != NULL:
        fastgd_advise_huge_pages(data, nelem * elsize)
    return data


cdef void* _realloc(void* ctx, void* data, size_t new_size) noexcept nogil:
    return fastgd_aligned_realloc(data, new_size)


cdef void _free(void* ctx, void* data, size_t size) noexcept nogil:
    fastgd_aligned_free(data)


cdef PyDataMem_Handler _handler
strncpy(_handler.name, b"fastgd_cache_line_aligned", sizeof(_handler.name) - 1)
_handler.version = 1
_handler.allocator.ctx = NULL
_handler.allocator.malloc = _malloc
_handler.allocator.calloc = _calloc
_handler.allocator.realloc = _realloc
_handler.allocator.free = _free
_HANDLER = PyCapsule_New(&_handler, "mem_handler", NULL)


def empty_aligned(shape, dtype):
    """np.empty(shape, dtype) with the data aligned to a cache line (64 bytes)."""
    previous = PyDataMem_SetHandler(_HANDLER)
    try:
        return np.empty(shape, dtype=dtype)
    finally:
        PyDataMem_SetHandler(previous)
