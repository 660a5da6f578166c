/* Runtime CPU dispatch, shared by the kernel families.
 *
 * A wheel must run on any x86-64 CPU, so the build never passes -march=native. Instead
 * the hot loops are compiled several times, once per instruction-set level, by GCC's and
 * Clang's target attribute:
 *
 *   scalar    the build's baseline flags, without hand-written vectors (a family that has
 *             no hand-written vectors treats it as baseline);
 *   baseline  the build's baseline flags: SSE2 on x86-64, NEON on aarch64;
 *   avx2      x86-64-v3: AVX2 and FMA (FMA is never contracted into: -ffp-contract=off);
 *   avx512    x86-64-v4: AVX-512 F, CD, BW, DQ and VL, with 512-bit vectors preferred.
 *
 * Each family keeps its own level (a static variable of its module) and picks the best
 * loop the CPU supports once at import; fastgd_cpu_level() says what the CPU supports.
 * Every level performs the same floating-point operations in the same order, so a kernel
 * that promises bitwise results keeps them across levels: only the register width differs.
 * Other compilers (MSVC) and architectures build the baseline only, and so does a build
 * with FASTGD_NO_DISPATCH defined (CFLAGS=-DFASTGD_NO_DISPATCH): CI builds that on x86-64
 * and runs the kernels' tests on it.
 */
#ifndef FASTGD_CPU_DISPATCH_H
#define FASTGD_CPU_DISPATCH_H

/* FASTGD_LEVEL_SCALAR, _BASELINE, _AVX2, _AVX512: fastgd/_codes.py's SIMD_LEVELS. */
#include "fastgd_codes.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) \
    && !defined(FASTGD_NO_DISPATCH)
#define FASTGD_X86_DISPATCH 1
#define FASTGD_TARGET_AVX2 __attribute__((target("avx2,fma")))
#if defined(__clang__)
#define FASTGD_TARGET_AVX512                                                            \
    __attribute__((target("avx2,fma,avx512f,avx512cd,avx512bw,avx512dq,avx512vl"),      \
                   min_vector_width(512)))
#else
#define FASTGD_TARGET_AVX512                                                            \
    __attribute__((target("avx2,fma,avx512f,avx512cd,avx512bw,avx512dq,avx512vl,"       \
                          "prefer-vector-width=512")))
#endif
#else
#define FASTGD_X86_DISPATCH 0
#define FASTGD_TARGET_AVX2
#define FASTGD_TARGET_AVX512
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

/* Ask for the cache line at `address` (no fault if there is none). */
#if defined(__GNUC__)
#define FASTGD_PREFETCH(address) __builtin_prefetch(address)
#else
#define FASTGD_PREFETCH(address) ((void)0)
#endif

/* The highest level this CPU (and its operating system) supports. */
static inline int fastgd_cpu_level(void)
{
#if FASTGD_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2")
        && __builtin_cpu_supports("fma"))
        return FASTGD_LEVEL_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FASTGD_LEVEL_AVX2;
#endif
    return FASTGD_LEVEL_BASELINE;
}

/* The level to run: the lowest of what is asked, what the CPU supports, and the highest
 * level the family has loops for. */
static inline int fastgd_choose_level(int asked, int family_highest)
{
    int level = fastgd_cpu_level();
    if (level > family_highest)
        level = family_highest;
    return asked < level ? asked : level;
}

/* For a family whose loops are all vectorised by the compiler, without a plain-C variant:
 * "scalar" runs its baseline loops. */
static inline int fastgd_choose_vector_level(int asked, int family_highest)
{
    int level = fastgd_choose_level(asked, family_highest);
    return level < FASTGD_LEVEL_BASELINE ? FASTGD_LEVEL_BASELINE : level;
}

/* Call NAME##_avx512, NAME##_avx2 or NAME##_baseline by a family's level. */
#if FASTGD_X86_DISPATCH
#define FASTGD_LEVEL_CALL(LEVEL, NAME, ...)                                             \
    ((LEVEL) == FASTGD_LEVEL_AVX512 ? NAME##_avx512(__VA_ARGS__)                        \
     : (LEVEL) == FASTGD_LEVEL_AVX2 ? NAME##_avx2(__VA_ARGS__)                          \
                                    : NAME##_baseline(__VA_ARGS__))
#else
#define FASTGD_LEVEL_CALL(LEVEL, NAME, ...) NAME##_baseline(__VA_ARGS__)
#endif

/* The CPU's features that matter to these kernels (for show_config): bit i of
 * fastgd_cpu_feature_bits() says whether the CPU has fastgd_cpu_feature_names[i]. */
#define FASTGD_N_CPU_FEATURES 10
static const char *const fastgd_cpu_feature_names[FASTGD_N_CPU_FEATURES] = {
    "sse2", "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq",
    "avx512vl"};
static inline unsigned fastgd_cpu_feature_bits(void)
{
    unsigned bits = 0;
#if FASTGD_X86_DISPATCH
    __builtin_cpu_init();
    bits |= (unsigned)(__builtin_cpu_supports("sse2") != 0) << 0;
    bits |= (unsigned)(__builtin_cpu_supports("sse4.2") != 0) << 1;
    bits |= (unsigned)(__builtin_cpu_supports("avx") != 0) << 2;
    bits |= (unsigned)(__builtin_cpu_supports("avx2") != 0) << 3;
    bits |= (unsigned)(__builtin_cpu_supports("fma") != 0) << 4;
    bits |= (unsigned)(__builtin_cpu_supports("avx512f") != 0) << 5;
    bits |= (unsigned)(__builtin_cpu_supports("avx512cd") != 0) << 6;
    bits |= (unsigned)(__builtin_cpu_supports("avx512bw") != 0) << 7;
    bits |= (unsigned)(__builtin_cpu_supports("avx512dq") != 0) << 8;
    bits |= (unsigned)(__builtin_cpu_supports("avx512vl") != 0) << 9;
#endif
    return bits;
}

#endif
