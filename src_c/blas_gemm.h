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

/* Calls FUNCTION, a Fortran-interface xGEMM of REAL whose integers are INT. */
#define FASTGD_GEMM_CALL(FUNCTION, REAL, INT)                                             \
    do {                                                                                  \
        const INT m_ = m, n_ = n, k_ = k, lda_ = lda, ldb_ = ldb, ldc_ = ldc;             \
        ((void (*)(const char *, const char *, const INT *, const INT *, const INT *,     \
                   const REAL *, const REAL *, const INT *, const REAL *, const INT *,    \
                   const REAL *, REAL *, const INT *))FUNCTION)(                          \
            transa, transb, &m_, &n_, &k_, &alpha, a, &lda_, b, &ldb_, &beta, c, &ldc_);  \
    } while (0)

/* NAME: C = alpha op(A) op(B) + beta C, column-major (BLAS's convention), through
 * FUNCTION, called with the integers the library has. */
#define FASTGD_DEFINE_GEMM(NAME, REAL, FUNCTION)                                          \
    static inline void NAME(const char *transa, const char *transb, int m, int n, int k,  \
                            REAL alpha, const REAL *a, int lda, const REAL *b, int ldb,   \
                            REAL beta, REAL *c, int ldc)                                  \
    {                                                                                     \
        if (fastgd_gemm_integer_bytes == 8)                                               \
            FASTGD_GEMM_CALL(FUNCTION, REAL, int64_t);                                    \
        else                                                                              \
            FASTGD_GEMM_CALL(FUNCTION, REAL, int32_t);                                    \
    }
FASTGD_DEFINE_GEMM(fastgd_sgemm, float, fastgd_sgemm_function)
FASTGD_DEFINE_GEMM(fastgd_dgemm, double, fastgd_dgemm_function)

#endif
