/* Benchmark of the colouring kernels against the machine's read bandwidth,
 * both measured in the same run.
 *
 * Bandwidth: the best of 5 sums of a 1 GiB float32 array on one core (the
 * floor for any colouring: one pass over the weights). Then fiber colouring
 * (colour sums + grouping, the step fib_color takes per group) of an
 * n x n float32 dense layer (default 4096) whose source has 64 or n colours:
 *   exact   a random base lifted (output classes of 1-8 units, members'
 *           weights re-split within each source class), FIB_TOL_EXACT;
 *   abs     the same plus noise: every weight moves by at most
 *           eps / (4 |its source class|), so each colour sum moves by less
 *           than eps / 4; FIB_TOL_ABS at eps (the planted classes are the
 *           answer: checked and printed);
 *   random  uniform random weights, nothing planted, FIB_TOL_ABS at eps.
 * Throughput is the layer's bytes over the best of `reps` times, for every
 * kernel set the CPU has, on 1 thread (and 2 with OpenMP).
 *
 * Then the same colouring of a convolution and of an LSTM layer (64 source
 * colours, exact), the dense colour-sum kernel alone, and the float64
 * product kernel (gemm_f64) at the budget correction's shape.
 *
 * Usage: bench_kernels [N [REPS [CASE [COLOURS]]]]   (defaults 4096, 5, all)
 * CASE: exact, abs, random, blocks (conv and LSTM only), kernel or gemm;
 * COLOURS: 64 or N. */
#include "compress/compress.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#  include <immintrin.h>
#  define BENCH_X86 1
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t state = 7;

static uint64_t rnd(void)
{
    uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double uniform(double lo, double hi)
{
    return lo + (hi - lo) * (double)(rnd() >> 11) * 0x1.0p-53;
}

/* ---- read bandwidth ----------------------------------------------------- */

static float sum_scalar(const float *x, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l];
    for (; i < n; i++)
        acc[0] += x[i];
    return acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
}

#ifdef BENCH_X86
__attribute__((target("avx2"))) static float sum_avx2(const float *x, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7] +
           sum_scalar(x + i, n - i);
}
#endif

static double read_bandwidth(void)
{
    size_t n = (size_t)1 << 28; /* 1 GiB of float32 */
    float *x = malloc(n * sizeof *x);
    if (!x)
        return 0;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(i & 1023) * 0x1.0p-10f;
    double best = INFINITY;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = now();
#ifdef BENCH_X86
        sink += __builtin_cpu_supports("avx2") ? sum_avx2(x, n) : sum_scalar(x, n);
#else
        sink += sum_scalar(x, n);
#endif
        t = now() - t;
        best = t < best ? t : best;
    }
    (void)sink;
    free(x);
    return (double)(n * sizeof(float)) / best * 1e-9;
}

/* ---- layers -------------------------------------------------------------- */

enum { EXACT, ABS, RANDOM };
static const char *const kind_name[] = {"exact", "abs", "random"};

typedef struct layer {
    int64_t n, k_in;
    float *w;
    int64_t *source;  /* colour of every column, canonical */
    int64_t *planted; /* planted class of every row (EXACT, ABS) */
} layer;

static void shuffle(int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rnd() % (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void canonical_labels(int64_t *labels, int64_t n)
{
    fib_partition p = {n, n, labels};
    fib_partition_canonicalize(&p);
}

static int make_layer(layer *L, int64_t n, int64_t k_in, int kind, double eps)
{
    L->n = n;
    L->k_in = k_in;
    L->w = malloc((size_t)(n * n) * sizeof *L->w);
    L->source = malloc((size_t)n * sizeof *L->source);
    L->planted = malloc((size_t)n * sizeof *L->planted);
    int64_t *size = calloc((size_t)k_in, sizeof *size);
    double *frac = malloc((size_t)n * sizeof *frac), *part_sum = calloc((size_t)k_in, sizeof *part_sum);
    if (!L->w || !L->source || !L->planted || !size || !frac || !part_sum)
        return -1;
    for (int64_t k = 0; k < n; k++)
        L->source[k] = k % k_in;
    if (k_in < n)
        shuffle(L->source, n);
    canonical_labels(L->source, n);
    for (int64_t k = 0; k < n; k++)
        size[L->source[k]]++;
    if (kind == RANDOM) {
        for (int64_t x = 0; x < n * n; x++)
            L->w[x] = (float)uniform(-1, 1);
        for (int64_t i = 0; i < n; i++)
            L->planted[i] = i;
        free(size), free(frac), free(part_sum);
        return 0;
    }
    /* Output classes of 1-8 units on shuffled rows; a base row per class. */
    int64_t *rows = malloc((size_t)n * sizeof *rows);
    double *base = malloc((size_t)(n * k_in) * sizeof *base);
    if (!rows || !base)
        return -1;
    for (int64_t i = 0; i < n; i++)
        rows[i] = i;
    shuffle(rows, n);
    int64_t classes = 0;
    for (int64_t at = 0; at < n; classes++) {
        int64_t len = 1 + (int64_t)(rnd() % 8);
        for (int64_t x = 0; x < len && at < n; x++)
            L->planted[rows[at++]] = classes;
    }
    for (int64_t x = 0; x < classes * k_in; x++)
        base[x] = uniform(-1, 1);
    for (int64_t i = 0; i < n; i++) {
        const double *b = base + L->planted[i] * k_in;
        float *row = L->w + i * n;
        /* Re-split: random positive parts of each base weight. */
        memset(part_sum, 0, (size_t)k_in * sizeof *part_sum);
        for (int64_t k = 0; k < n; k++) {
            frac[k] = size[L->source[k]] == 1 ? 1.0 : uniform(0.5, 1.5);
            part_sum[L->source[k]] += frac[k];
        }
        for (int64_t k = 0; k < n; k++) {
            int64_t c = L->source[k];
            double v = b[c] * frac[k] / part_sum[c];
            if (kind == ABS)
                v += uniform(-1, 1) * eps / 4 / (double)size[c];
            row[k] = (float)v;
        }
    }
    canonical_labels(L->planted, n);
    free(rows), free(base), free(size), free(frac), free(part_sum);
    return 0;
}

static void free_layer(layer *L)
{
    free(L->w);
    free(L->source);
    free(L->planted);
}

/* ---- the colouring step ---------------------------------------------------- */

typedef struct result {
    double seconds, sums, grouping; /* best total, and its two steps */
    int64_t classes;
    int recovered; /* the planted classes exactly */
} result;

static int colour(const layer *L, double eps, int32_t threads, int reps,
                  result *res)
{
    fib_graph *g = NULL;
    int32_t in, grp;
    if (fib_graph_create(&g) || fib_graph_add_input(g, L->n, &in) ||
        fib_graph_add_dense(g, in, L->n, FIB_DTYPE_F32, L->w, L->n, NULL, 0, &grp))
        return -1;
    fib_partition parts[2] = {{L->n, L->k_in, L->source}, {0}};
    if (fib_partition_init(&parts[1], L->n))
        return -1;
    res->seconds = INFINITY;
    /* as in fib_color: signature memory is reused from one signature to
     * the next (the first repetition maps and faults it in) */
    fib_scratch scratch = {0};
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        fib_signature sig;
        if (fib_fiber_signature_ex(g, grp, parts, threads, &scratch, &sig))
            return -1;
        double t1 = now();
        if (fib_group_signatures(&sig, eps, &parts[1]))
            return -1;
        fib_signature_clear(&sig);
        double t2 = now();
        if (t2 - t0 < res->seconds) {
            res->seconds = t2 - t0;
            res->sums = t1 - t0;
            res->grouping = t2 - t1;
        }
    }
    fib_scratch_clear(&scratch);
    res->classes = parts[1].n_classes;
    res->recovered = memcmp(parts[1].color, L->planted, (size_t)L->n * sizeof(int64_t)) == 0;
    fib_partition_clear(&parts[1]);
    fib_graph_free(g);
    return 0;
}

/* The colour-sum kernel alone (no signature, no grouping, no allowance
 * pass): a random n x n float32 layer, 64 random source colours, 1 thread,
 * best of reps, every kernel set. */
static int kernel_only(int64_t n, int reps, double bw)
{
    const int64_t k = 64;
    float *w = malloc((size_t)(n * n) * sizeof *w);
    int64_t *color = malloc((size_t)n * sizeof *color);
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    int64_t *start = malloc((size_t)(k + 1) * sizeof *start);
    double *sum = malloc((size_t)(n * k) * sizeof *sum);
    double *abs_sum = malloc((size_t)(n * k) * sizeof *abs_sum);
    double *scratch = malloc((size_t)fib_color_scratch_len(n, k) * sizeof *scratch);
    if (!w || !color || !perm || !start || !sum || !abs_sum || !scratch) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int64_t x = 0; x < n * n; x++)
        w[x] = (float)uniform(-1, 1);
    for (int64_t j = 0; j < n; j++)
        color[j] = j % k;
    shuffle(color, n);
    fib_color_order(color, n, k, perm, start);
    printf("colour-sum kernel alone, %lld x %lld float32, %lld random colours, 1 thread, best of %d\n",
           (long long)n, (long long)n, (long long)k, reps);
    for (int32_t level = FIB_SIMD_SCALAR; level <= FIB_SIMD_AVX512; level++) {
        const fib_kernels *kern = fib_kernels_level(level);
        if (!kern)
            continue;
        double best = INFINITY;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now();
            for (int64_t r0 = 0; r0 < n; r0 += kern->tile_rows) {
                int64_t rows = n - r0 < kern->tile_rows ? n - r0 : kern->tile_rows;
                kern->color_sums_f32(w + r0 * n, n, rows, n, color, perm, start, k, scratch,
                                      sum + r0 * k, abs_sum + r0 * k, k);
            }
            double t = now() - t0;
            best = t < best ? t : best;
        }
        double gbs = (double)(n * n * 4) / best * 1e-9;
        printf("kernel  %7lld %-7s %7d %9.2f %8.2f %6.2f\n", (long long)k, kern->name, 1,
               best * 1e3, gbs, gbs / bw);
    }
    free(w), free(color), free(perm), free(start), free(sum), free(abs_sum), free(scratch);
    return 0;
}

/* Fiber colouring of a convolution and of an LSTM layer (one refinement:
 * gate rows of w_ih over the source's classes, of w_hh over the group's
 * current one class), random float32 weights over a source with 64 random
 * colours, every kernel set, 1 and 2 threads: the same colour-sum kernels
 * as dense blocks, through fib_color_rows. */
static int other_blocks(int reps, double bw, int n_counts, const int32_t *thread_counts)
{
    const int64_t k_in = 64, conv_in = 1024, conv_out = 1024, hidden = 1024, seq_in = 2048;
    int64_t n_conv = conv_out * conv_in * 9, n_ih = 4 * hidden * seq_in, n_hh = 4 * hidden * hidden;
    float *w = malloc((size_t)(n_conv + n_ih + n_hh) * sizeof *w);
    int64_t *source = malloc((size_t)seq_in * sizeof *source);
    if (!w || !source)
        return 1;
    for (int64_t x = 0; x < n_conv + n_ih + n_hh; x++)
        w[x] = (float)uniform(-1, 1);
    for (int b = 0; b < 2; b++) {
        int64_t n_src = b == 0 ? conv_in : seq_in;
        for (int64_t k = 0; k < n_src; k++)
            source[k] = k % k_in;
        shuffle(source, n_src);
        canonical_labels(source, n_src);
        fib_graph *g = NULL;
        int32_t in, grp;
        int64_t bytes = (b == 0 ? n_conv : n_ih + n_hh) * 4;
        if (fib_graph_create(&g) ||
            fib_graph_add_input_positions(g, n_src, b == 0 ? 16 : 8, b == 0 ? 16 : 1, &in) ||
            (b == 0 ? fib_graph_add_conv(g, in, conv_out, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F32,
                                         w, NULL, 0, &grp)
                    : fib_graph_add_lstm(g, in, hidden, FIB_DTYPE_F32, w + n_conv,
                                         w + n_conv + n_ih, NULL, NULL, 0, &grp)))
            return 1;
        fib_partition parts[2] = {{n_src, k_in, source}, {0}};
        if (fib_partition_init(&parts[1], b == 0 ? conv_out : hidden))
            return 1;
        fib_partition_single(&parts[1]);
        for (int32_t level = FIB_SIMD_SCALAR; level <= FIB_SIMD_AVX512; level++) {
            if (fib_kernels_override(level))
                continue;
            for (int t = 0; t < n_counts; t++) {
                double best = INFINITY;
                fib_scratch scratch = {0};
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = now();
                    fib_signature sig;
                    fib_partition out;
                    if (fib_fiber_signature_ex(g, grp, parts, thread_counts[t], &scratch, &sig) ||
                        fib_partition_init(&out, parts[1].n_units) ||
                        fib_group_signatures(&sig, -1.0, &out))
                        return 1;
                    fib_signature_clear(&sig);
                    fib_partition_clear(&out);
                    double dt = now() - t0;
                    best = dt < best ? dt : best;
                }
                fib_scratch_clear(&scratch);
                double gbs = (double)bytes / best * 1e-9;
                printf("%-7s %7lld %-7s %7d %9.2f %8.2f %6.2f %7.2f %8s %8s %8s %s\n",
                       b == 0 ? "conv" : "lstm", (long long)k_in, fib_kernels_active()->name,
                       (int)thread_counts[t], best * 1e3, gbs, gbs / bw, 0.6, "-", "-", "-", "-");
                fflush(stdout);
            }
        }
        fib_kernels_override(-1);
        fib_partition_clear(&parts[1]);
        fib_graph_free(g);
    }
    printf("(conv: 1024 x 1024 x 3 x 3 float32 kernels, 37.7 MB; lstm: w_ih 4096 x 2048 and "
           "w_hh 4096 x 1024 float32, 50.3 MB; exact)\n");
    free(w);
    free(source);
    return 0;
}

/* The product kernel gemm_f64 at the budget correction's shape: a block
 * of 120 samples' 2048 values (fib_budget_correction_block) times a
 * 2048 x 2048 layer (packed for the set), 0.5 G multiply-adds a call,
 * 1 thread, best of reps, every set; G multiply-adds a second. The scalar
 * set (the reference, and what a CPU without FMA runs) takes the first 8
 * rows only: its fused terms are the FMA instruction's, or the exact
 * emulation's under FIBRATION_NO_FMA=1. */
static int gemm_only(int reps)
{
    const int64_t m = 120, k = 2048, n = 2048, m_scalar = 8;
    double *a = malloc((size_t)(m * k) * sizeof *a), *c = malloc((size_t)(m * n) * sizeof *c);
    double *packed = malloc((size_t)(k * n) * sizeof *packed); /* n: whole panels */
    if (!a || !c || !packed)
        return 1;
    for (int64_t x = 0; x < m * k; x++)
        a[x] = uniform(-1, 1);
    printf("%-7s %-7s %5s %9s %10s\n", "case", "kernels", "rows", "time ms", "G madd/s");
    for (int32_t level = FIB_SIMD_SCALAR; level <= FIB_SIMD_AVX512; level++) {
        const fib_kernels *kern = fib_kernels_level(level);
        if (!kern)
            continue;
        int64_t rows = level == FIB_SIMD_SCALAR ? m_scalar : m;
        for (int64_t x = 0; x < k * n; x++)
            packed[x] = uniform(-1, 1);
        double best = INFINITY;
        for (int rep = 0; rep < reps; rep++) {
            memset(c, 0, (size_t)(rows * n) * sizeof *c);
            double t0 = now();
            kern->gemm_f64(rows, n, k, a, k, packed, c, n);
            double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        printf("%-7s %-7s %5lld %9.2f %10.2f\n", "gemm", kern->name, (long long)rows,
               best * 1e3, (double)(rows * n * k) / best * 1e-9);
        fflush(stdout);
    }
    printf("(gemm: rows x 2048 times 2048 x 2048 float64, c = fma(a, b, c) term by term)\n");
    free(a), free(c), free(packed);
    return 0;
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 4096;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    const double eps = 1e-3;
    if (n < 64 || reps < 1) {
        fprintf(stderr, "usage: bench_kernels [N >= 64 [REPS]]\n");
        return 2;
    }
    double bw = read_bandwidth();
    printf("read bandwidth, 1 core, sum of a 1 GiB float32 array: %.1f GB/s\n", bw);
    printf("fiber colouring of a %lld x %lld float32 dense layer (%.1f MB), eps %g, best of %d\n",
           (long long)n, (long long)n, (double)(n * n * 4) * 1e-6, eps, reps);
    printf("%-7s %7s %-7s %7s %9s %8s %6s %7s %8s %8s %8s %s\n", "case", "colours", "kernels",
           "threads", "time ms", "GB/s", "ratio", "target", "sums ms", "group ms", "classes",
           "planted");
    int32_t thread_counts[2] = {1, 2};
    int n_counts = (fib_features() & FIB_FEATURE_OPENMP) ? 2 : 1;
    const char *only_case = argc > 3 ? argv[3] : NULL;
    int64_t only_colours = argc > 4 ? atoll(argv[4]) : 0;
    int failed = 0;
    int64_t colours[2] = {64, n};
    for (int kind = EXACT; kind <= RANDOM; kind++)
        for (int c = 0; c < 2; c++) {
            if ((only_case && strcmp(only_case, kind_name[kind])) ||
                (only_colours && only_colours != colours[c]))
                continue;
            layer L;
            if (make_layer(&L, n, colours[c], kind, eps)) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            double target = kind == EXACT ? 0.6 : 0.3;
            for (int32_t level = FIB_SIMD_SCALAR; level <= FIB_SIMD_AVX512; level++) {
                if (fib_kernels_override(level))
                    continue;
                for (int t = 0; t < n_counts; t++) {
                    result r = {0};
                    if (colour(&L, kind == EXACT ? -1.0 : eps, thread_counts[t], reps, &r)) {
                        fprintf(stderr, "colouring failed: %s\n", fib_last_error());
                        return 1;
                    }
                    double gbs = (double)(n * n * 4) / r.seconds * 1e-9;
                    const char *planted = kind == RANDOM ? "-" : r.recovered ? "recovered" : "NOT RECOVERED";
                    if (kind != RANDOM && !r.recovered)
                        failed = 1;
                    printf("%-7s %7lld %-7s %7d %9.2f %8.2f %6.2f %7.2f %8.2f %8.2f %8lld %s\n",
                           kind_name[kind], (long long)colours[c],
                           fib_kernels_active()->name, (int)thread_counts[t],
                           r.seconds * 1e3, gbs, gbs / bw, target, r.sums * 1e3,
                           r.grouping * 1e3, (long long)r.classes, planted);
                    fflush(stdout);
                }
            }
            fib_kernels_override(-1);
            free_layer(&L);
        }
    if (!only_case || !strcmp(only_case, "blocks"))
        failed |= other_blocks(reps, bw, n_counts, thread_counts);
    if (!only_case || !strcmp(only_case, "kernel"))
        failed |= kernel_only(n, reps, bw);
    if (!only_case || !strcmp(only_case, "gemm"))
        failed |= gemm_only(reps);
    return failed;
}
