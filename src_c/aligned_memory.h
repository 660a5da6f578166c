/* Blocks whose data start on a cache line (64 bytes). malloc aligns large blocks to 16
 * bytes only, so rows read or written in whole cache lines would straddle one more line
 * each. The data sit at the first 64-byte boundary past a header that keeps malloc's block
 * and the size asked for (for realloc); fastgd_aligned_free releases them. Each returns
 * NULL when malloc does or the size would overflow.
 *
 * Used by fastgd._ext._memory (a NumPy memory handler: output arrays), by the masked
 * kernels' dH.T accumulators, whose rows are fetched at random, and by the scratch tiles
 * that the distance kernels and the dense masked path read a whole vector at a time. */
#ifndef FASTGD_ALIGNED_MEMORY_H
#define FASTGD_ALIGNED_MEMORY_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define FASTGD_CACHE_LINE 64
/* The header: malloc's block (a pointer) and the size, each in a size_t slot. */
#define FASTGD_ALIGNED_HEADER (2 * sizeof(size_t))
#define FASTGD_ALIGNED_EXTRA (FASTGD_ALIGNED_HEADER + FASTGD_CACHE_LINE)

static inline void *fastgd_aligned_place(char *block, size_t size)
{
    char *data = (char *)(((uintptr_t)block + FASTGD_ALIGNED_HEADER + FASTGD_CACHE_LINE - 1)
                          & ~(uintptr_t)(FASTGD_CACHE_LINE - 1));
    ((void **)data)[-1] = block;
    ((size_t *)data)[-2] = size;
    return data;
}

static inline void *fastgd_aligned_malloc(size_t size)
{
    char *block;
    if (size > SIZE_MAX - FASTGD_ALIGNED_EXTRA)
        return NULL;
    block = (char *)malloc(size + FASTGD_ALIGNED_EXTRA);
    return block == NULL ? NULL : fastgd_aligned_place(block, size);
}

static inline void *fastgd_aligned_calloc(size_t count, size_t size)
{
    char *block;
    if (size != 0 && count > (SIZE_MAX - FASTGD_ALIGNED_EXTRA) / size)
        return NULL;
    block = (char *)calloc(count * size + FASTGD_ALIGNED_EXTRA, 1);
    return block == NULL ? NULL : fastgd_aligned_place(block, count * size);
}

static inline void fastgd_aligned_free(void *data)
{
    if (data != NULL)
        free(((void **)data)[-1]);
}

/* A new block with the first min(old, new) bytes of data; data is freed (kept on NULL). */
static inline void *fastgd_aligned_realloc(void *data, size_t size)
{
    void *moved;
    size_t old_size;
    if (data == NULL)
        return fastgd_aligned_malloc(size);
    moved = fastgd_aligned_malloc(size);
    if (moved == NULL)
        return NULL;
    old_size = ((size_t *)data)[-2];
    memcpy(moved, data, old_size < size ? old_size : size);
    fastgd_aligned_free(data);
    return moved;
}

/* Ask Linux for transparent huge pages over the 2 MiB pages inside a block of 4 MiB or
 * more (what NumPy's default allocator does); elsewhere nothing. */
static inline void fastgd_advise_huge_pages(void *data, size_t size)
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

#endif
