/* The GEMM the kernels call: a BLAS's Fortran-interface sgemm and dgemm, taken at run time
   from a library the process already holds (fastgd/_blas.py chooses it: NumPy's bundled
   OpenBLAS, which has 64-bit integers, or SciPy's cython_blas, which has 32-bit ones).

   Every module that includes this header has its own copy of the pointers below and sets
   them once, at its import, before any of its kernels can run (fastgd_use_gemm). Callers
   pass 32-bit sizes; they are widened here for a library with 64-bit integers. */
#ifndef FASTGD_BLAS_GEMM_H
#define FASTGD_BLAS_GEMM_H

#include <stdint.h>

static void *fastgd_sgemm_function = 0;
static void *fastgd_dgemm_function = 0;
static int fastgd_gemm_integer_bytes = 0;

/* Returns 0, or -1 (nothing set) for a null address or an integer size other than 4 or 8. */
static inline int fastgd_use_gemm(uintptr_t sgemm, uintptr_t dgemm, int integer_bytes) {
    if (sgemm == 0 || dgemm == 0 || (integer_bytes != 4 && integer_bytes != 8)) return -1;
    fastgd_sgemm_function = (void*)sgemm;
    fastgd_dgemm_function = (void*)dgemm;
    fastgd_gemm_integer_bytes = integer_bytes;
    return 0;
}

/* NAME: C = alpha op(A) op(B) + beta C, column-major (BLAS's convention), through
 * FUNCTION, called with the integers the library has. */
#define FASTGD_DEFINE_GEMM(NAME, REAL, FUNCTION)                                          \
    static inline void NAME(const char *transa, const char *transb, int m, int n, int k,  \
                            REAL alpha, const REAL *a, int lda, const REAL *b, int ldb,   \
                            REAL beta, REAL *c, int ldc)                                  \
    {                                                                                     \
        if (fastgd_gemm_integer_bytes == 8) {                                             \
            int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc;           \
            ((void (*)(const char *, const char *, const int64_t *, const int64_t *,      \
                       const int64_t *, const REAL *, const REAL *, const int64_t *,      \
                       const REAL *, const int64_t *, const REAL *, REAL *,               \
                       const int64_t *))FUNCTION)(transa, transb, &m8, &n8, &k8, &alpha,  \
                                                  a, &lda8, b, &ldb8, &beta, c, &ldc8);   \
        } else {                                                                          \
            int32_t m4 = m, n4 = n, k4 = k, lda4 = lda, ldb4 = ldb, ldc4 = ldc;           \
            ((void (*)(const char *, const char *, const int32_t *, const int32_t *,      \
                       const int32_t *, const REAL *, const REAL *, const int32_t *,      \
                       const REAL *, const int32_t *, const REAL *, REAL *,               \
                       const int32_t *))FUNCTION)(transa, transb, &m4, &n4, &k4, &alpha,  \
                                                  a, &lda4, b, &ldb4, &beta, c, &ldc4);   \
        }                                                                                 \
    }
FASTGD_DEFINE_GEMM(fastgd_sgemm, float, fastgd_sgemm_function)
FASTGD_DEFINE_GEMM(fastgd_dgemm, double, fastgd_dgemm_function)

#endif
