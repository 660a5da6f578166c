/* The OpenMP runtime as the kernels see it, with or without OpenMP in the build. */
#ifndef FASTGD_OPENMP_RUNTIME_H
#define FASTGD_OPENMP_RUNTIME_H

#ifdef _OPENMP
#include <omp.h>
#define FASTGD_HAVE_OPENMP 1
/* omp_get_max_threads() of the calling thread: OMP_NUM_THREADS, or a limit that
   omp_set_num_threads (threadpoolctl) set since. */
static inline int fastgd_omp_max_threads(void) { return omp_get_max_threads(); }
#else
#define FASTGD_HAVE_OPENMP 0
static inline int fastgd_omp_max_threads(void) { return 1; }
#endif

#endif
