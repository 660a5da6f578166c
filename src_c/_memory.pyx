"""Arrays whose data start on a cache line (64 bytes).

malloc aligns large blocks to 16 bytes only, so the rows of an output written in vectors
of 64 bytes straddle two cache lines at every store. ``empty_aligned`` allocates the array
through a NumPy memory handler (NEP 49) that aligns the data to 64 bytes: the array owns
its data like any other (the handler stays with it and frees it), resize works, and
nothing else in the process changes. Like NumPy's own allocator on Linux, it asks for
huge pages for blocks of 4 MiB and more.
"""

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, strncpy

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

cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Ask Linux for transparent huge pages over the 2 MiB pages inside a block (what
     * NumPy's default allocator does for blocks of 4 MiB and more); elsewhere nothing. */
    static void fastgd_advise_huge_pages(void *data, size_t size)
    {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        const uintptr_t huge = (uintptr_t)1 << 21;
        uintptr_t begin = ((uintptr_t)data + huge - 1) & ~(huge - 1);
        uintptr_t end = ((uintptr_t)data + size) & ~(huge - 1);
        if (size >= ((size_t)1 << 22) && end > begin)
            (void)madvise((void *)begin, end - begin, MADV_HUGEPAGE);
    #else
        (void)data;
        (void)size;
    #endif
    }
    """
    void fastgd_advise_huge_pages(void* data, size_t size) noexcept nogil

cdef enum:
    CACHE_LINE = 64
    # Below the data: the block malloc returned and the size asked for (for realloc).
    HEADER = 2 * sizeof(size_t)


cdef inline char* _align(char* block) noexcept nogil:
    """The first cache line of block that leaves room for the header below it."""
    cdef char* data = <char*>((<uintptr_t>block + HEADER + CACHE_LINE - 1)
                              & ~(<uintptr_t>CACHE_LINE - 1))
    (<void**>data)[-1] = block
    return data


cdef void* _malloc(void* ctx, size_t size) noexcept nogil:
    cdef char* block
    cdef char* data
    if size > <size_t>-1 - HEADER - CACHE_LINE:
        return NULL
    block = <char*>malloc(size + HEADER + CACHE_LINE)
    if block == NULL:
        return NULL
    data = _align(block)
    (<size_t*>data)[-2] = size
    fastgd_advise_huge_pages(data, size)
    return data


cdef void* _calloc(void* ctx, size_t nelem, size_t elsize) noexcept nogil:
    cdef char* block
    cdef char* data
    if elsize != 0 and nelem > (<size_t>-1 - HEADER - CACHE_LINE) // elsize:
        return NULL
    block = <char*>calloc(nelem * elsize + HEADER + CACHE_LINE, 1)
    if block == NULL:
        return NULL
    data = _align(block)
    (<size_t*>data)[-2] = nelem * elsize
    fastgd_advise_huge_pages(data, nelem * elsize)
    return data


cdef void _free(void* ctx, void* data, size_t size) noexcept nogil:
    if data != NULL:
        free((<void**>data)[-1])


cdef void* _realloc(void* ctx, void* data, size_t new_size) noexcept nogil:
    cdef void* moved
    cdef size_t old_size
    if data == NULL:
        return _malloc(ctx, new_size)
    moved = _malloc(ctx, new_size)
    if moved == NULL:
        return NULL
    old_size = (<size_t*>data)[-2]
    memcpy(moved, data, old_size if old_size < new_size else new_size)
    _free(ctx, data, old_size)
    return moved


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
