/* The GEMM the kernels call: a BLAS's Fortran-interface sgemm and dgemm, taken at run time
   from a library the process already holds (fastgd/_blas.py chooses it: NumPy's bundled
   OpenBLAS, which has 64-bit integers, or SciPy's cython_blas, which has 32-bit ones).

   Every module that includes this header has its own copy of the pointers below and sets
   them once, at its import, before any of its kernels can run (fastgd_use_gemm). Callers
   pass 32-bit sizes; they are widened here for a library with 64-bit integers. */
#ifndef FASTGD_BLAS_GEMM_H
#define FASTGD_BLAS_GEMM_H

#include <stdint.h>

typedef void (*fastgd_sgemm_i32)(const char*, const char*, const int32_t*, const int32_t*,
                                 const int32_t*, const float*, const float*, const int32_t*,
                                 const float*, const int32_t*, const float*, float*,
                                 const int32_t*);
typedef void (*fastgd_dgemm_i32)(const char*, const char*, const int32_t*, const int32_t*,
                                 const int32_t*, const double*, const double*, const int32_t*,
                                 const double*, const int32_t*, const double*, double*,
                                 const int32_t*);
typedef void (*fastgd_sgemm_i64)(const char*, const char*, const int64_t*, const int64_t*,
                                 const int64_t*, const float*, const float*, const int64_t*,
                                 const float*, const int64_t*, const float*, float*,
                                 const int64_t*);
typedef void (*fastgd_dgemm_i64)(const char*, const char*, const int64_t*, const int64_t*,
                                 const int64_t*, const double*, const double*, const int64_t*,
                                 const double*, const int64_t*, const double*, double*,
                                 const int64_t*);

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

/* C = alpha op(A) op(B) + beta C, column-major (BLAS's convention). */
static inline void fastgd_sgemm(const char *transa, const char *transb, int m, int n, int k,
                                float alpha, const float *a, int lda, const float *b, int ldb,
                                float beta, float *c, int ldc) {
    if (fastgd_gemm_integer_bytes == 8) {
        int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc;
        ((fastgd_sgemm_i64)fastgd_sgemm_function)(transa, transb, &m8, &n8, &k8, &alpha, a,
                                                  &lda8, b, &ldb8, &beta, c, &ldc8);
    } else {
        int32_t m4 = m, n4 = n, k4 = k, lda4 = lda, ldb4 = ldb, ldc4 = ldc;
        ((fastgd_sgemm_i32)fastgd_sgemm_function)(transa, transb, &m4, &n4, &k4, &alpha, a,
                                                  &lda4, b, &ldb4, &beta, c, &ldc4);
    }
}

static inline void fastgd_dgemm(const char *transa, const char *transb, int m, int n, int k,
                                double alpha, const double *a, int lda, const double *b,
                                int ldb, double beta, double *c, int ldc) {
    if (fastgd_gemm_integer_bytes == 8) {
        int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc;
        ((fastgd_dgemm_i64)fastgd_dgemm_function)(transa, transb, &m8, &n8, &k8, &alpha, a,
                                                  &lda8, b, &ldb8, &beta, c, &ldc8);
    } else {
        int32_t m4 = m, n4 = n, k4 = k, lda4 = lda, ldb4 = ldb, ldc4 = ldc;
        ((fastgd_dgemm_i32)fastgd_dgemm_function)(transa, transb, &m4, &n4, &k4, &alpha, a,
                                                  &lda4, b, &ldb4, &beta, c, &ldc4);
    }
}

#endif
