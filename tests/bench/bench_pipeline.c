/* The whole pipeline on a memory-mapped model file: load (map + checks),
 * colour fibers, opfibers (fib_color, FIB_SYM_COVERS, EXACT) and
 * fib_compress, timed phase by phase beside the time to read the file once,
 * measured in the same run; peak memory (getrusage max RSS) beside the file
 * size; 1 thread against 2.
 *
 * The model: a synthetic float32 pre-norm Transformer stack, saved with
 * fib_model_save (every block through the public constructors):
 *   input (d features, a sequence of 4 positions)
 *   embed  dense d x d
 *   L x [ norm (LayerNorm) -> multi-head attention (q, k, v, core, out;
 *         heads of 64) -> sum with the stream -> norm -> dense 4d x d (gelu)
 *         -> dense d x 4d -> sum with the stream ]
 *   head   dense 512 x d (the output)
 * 12 d^2 weights per layer. Planted symmetry: every hidden group's units fall
 * in classes of 8 (q, k, v and the core: classes inside heads), rows of one
 * class are equal and columns of one source class hold equal values, so
 * fibers and opfibers are both the planted classes and the base is 64 times
 * smaller in weights (its float64 weights are 1/32 of the file).
 *
 * The generator runs in a child process (its buffers never count in the
 * measured peak); every measured pipeline runs in a fresh child
 * (`--run PATH THREADS`, OMP_NUM_THREADS=THREADS), whose max RSS is its own.
 *
 * Usage: bench_pipeline [PARAMS [PATH [keep]]]
 *   PARAMS  about this many weights (default 1e9: d = 2048, 20 layers;
 *           2.5e8 gives 5 layers); d = 2048 unless PARAMS < 5e7 (d = 512).
 *   PATH    the model file (default pipeline_model.safetensors in the current
 *           directory); it is generated when missing and deleted at the end
 *           unless `keep` is given.
 * Environment: FIB_BENCH_PARAMS overrides the default PARAMS. */
#define _GNU_SOURCE
#include "fibration.h"
#include "compress/compress.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLASS 8      /* planted class size */
#define HEAD_DIM 64
#define SEQ 4
#define N_OUT 512

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t z)
{
    z += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A value in [-1, 1) with 16 significant bits (exact in float32, and so is
 * its eighth). */
static float value_of(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t h = mix(seed ^ mix(a * UINT64_C(0x100000001b3) ^ mix(b)));
    return (float)((double)(int64_t)(h >> 48) / 32768.0 - 1.0);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_pipeline: %s: %s\n", what, fib_last_error());
    exit(1);
}

#define CHECK(call) do { if ((call) != FIB_OK) die(#call); } while (0)

/* ---- the structure ------------------------------------------------------ */

typedef struct shape {
    int64_t d, layers;
} shape;

static shape shape_for(double params)
{
    shape s;
    s.d = params < 5e7 ? 512 : 2048;
    s.layers = (int64_t)llround(params / (12.0 * (double)s.d * (double)s.d));
    if (s.layers < 1)
        s.layers = 1;
    return s;
}

/* Planted class of unit i of a group of width n: a fixed permutation of the
 * units (odd multiplier), then blocks of CLASS. Head-local groups (q, k, v)
 * permute inside each head, so classes never span heads. */
static int64_t class_of(int64_t i, int64_t n, int head_local)
{
    if (head_local) {
        int64_t h = i / HEAD_DIM, j = i % HEAD_DIM;
        return h * (HEAD_DIM / CLASS) + ((j * 37 + 11) % HEAD_DIM) / CLASS;
    }
    return ((i * 2654435761LL + 7) % n) / CLASS;
}

/* A planted matrix n_out x n_in: W[i][k] = B[class(i)][class(k)] / CLASS
 * (rows of a class equal, columns of a class equal); rows_discrete: B has one
 * row per unit; cols_discrete: the source is discrete (no /CLASS, one column
 * per unit). */
static void fill_matrix(float *w, int64_t n_out, int64_t n_in, uint64_t seed,
                        int rows_local, int rows_discrete, int cols_local,
                        int cols_discrete)
{
    for (int64_t i = 0; i < n_out; i++) {
        int64_t ci = rows_discrete ? i : class_of(i, n_out, rows_local);
        float *row = w + i * n_in;
        for (int64_t k = 0; k < n_in; k++) {
            if (cols_discrete)
                row[k] = value_of(seed, (uint64_t)ci, (uint64_t)k);
            else
                row[k] = value_of(seed, (uint64_t)ci,
                                  (uint64_t)class_of(k, n_in, cols_local)) / CLASS;
        }
    }
}

static void fill_vector(float *v, int64_t n, uint64_t seed, int local)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = value_of(seed, (uint64_t)class_of(i, n, local), 0);
}

static float *buffer(int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_pipeline: out of memory generating the model\n");
        exit(1);
    }
    return p;
}

static void generate(const char *path, shape s)
{
    int64_t d = s.d, f = 4 * d;
    fib_graph *g;
    CHECK(fib_graph_create(&g));
    int32_t x, h, id, n1, attn, r, n2, up, down;
    CHECK(fib_graph_add_input_positions(g, d, SEQ, 1, &x));
    uint64_t seed = 1;
    float *we = buffer(d * d), *be = buffer(d);
    fill_matrix(we, d, d, seed++, 0, 0, 0, 1);
    fill_vector(be, d, seed++, 0);
    CHECK(fib_graph_add_dense(g, x, d, FIB_DTYPE_F32, we, d, be, 0, &h));
    CHECK(fib_graph_set_group_name(g, h, "embed"));
    for (int64_t l = 0; l < s.layers; l++) {
        float *g1 = buffer(d), *b1 = buffer(d), *g2 = buffer(d), *b2 = buffer(d);
        float *win = buffer(3 * d * d), *bin = buffer(3 * d);
        float *wout = buffer(d * d), *bout = buffer(d);
        float *wup = buffer(f * d), *bup = buffer(f), *wdn = buffer(d * f), *bdn = buffer(d);
        fill_vector(g1, d, seed++, 0);
        fill_vector(b1, d, seed++, 0);
        fill_vector(g2, d, seed++, 0);
        fill_vector(b2, d, seed++, 0);
        for (int p = 0; p < 3; p++) {
            fill_matrix(win + p * d * d, d, d, seed++, 1, 0, 0, 0);
            fill_vector(bin + p * d, d, seed++, 1);
        }
        fill_matrix(wout, d, d, seed++, 0, 0, 1, 0);
        fill_vector(bout, d, seed++, 0);
        fill_matrix(wup, f, d, seed++, 0, 0, 0, 0);
        fill_vector(bup, f, seed++, 0);
        fill_matrix(wdn, d, f, seed++, 0, 0, 0, 0);
        fill_vector(bdn, d, seed++, 0);
        CHECK(fib_graph_add_norm(g, h, FIB_NORM_LAYER, FIB_DTYPE_F32, g1, b1, 1e-5, 0, &n1));
        CHECK(fib_graph_add_attention(g, n1, d / HEAD_DIM, FIB_DTYPE_F32, win, bin, wout,
                                      bout, 0, &attn));
        CHECK(fib_graph_add_sum(g, h, attn, &r));
        CHECK(fib_graph_add_norm(g, r, FIB_NORM_LAYER, FIB_DTYPE_F32, g2, b2, 1e-5, 0, &n2));
        CHECK(fib_graph_add_dense(g, n2, f, FIB_DTYPE_F32, wup, d, bup, 0, &up));
        CHECK(fib_graph_set_activation(g, up, FIB_ACT_GELU, 0));
        CHECK(fib_graph_add_dense(g, up, d, FIB_DTYPE_F32, wdn, f, bdn, 0, &down));
        CHECK(fib_graph_add_sum(g, r, down, &h));
    }
    float *wh = buffer(N_OUT * d), *bh = buffer(N_OUT);
    fill_matrix(wh, N_OUT, d, seed++, 0, 1, 0, 0);
    for (int64_t i = 0; i < N_OUT; i++)
        bh[i] = value_of(seed, (uint64_t)i, 1);
    CHECK(fib_graph_add_dense(g, h, N_OUT, FIB_DTYPE_F32, wh, d, bh, 0, &id));
    CHECK(fib_graph_set_group_name(g, id, "head"));
    CHECK(fib_model_save(g, path, FIB_DTYPE_F32));
    /* the buffers are borrowed by the graph; the process exits next */
}

/* ---- reading the file once ---------------------------------------------- */

static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Maps the file and sums it as 64-bit words (a checksum pass) on `threads`
 * threads (OpenMP; 1 without it); returns the seconds, mapping and
 * unmapping included. Two threads measure what this host gives a pass
 * over memory on two cores: the ceiling of the pipeline's 2-thread
 * speed-up where it is bound by memory. */
static double read_threads(const char *path, int threads, uint64_t *sum_out)
{
    double t = now();
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(path);
        exit(1);
    }
    size_t n = (size_t)st.st_size / 8;
    const uint64_t *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    uint64_t total = 0;
    int64_t blocks = (int64_t)(n / 8);
    (void)threads; /* without OpenMP */
    FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) reduction(+ : total))
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint64_t *q = p + blk * 8;
        total += q[0] + q[1] + q[2] + q[3] + q[4] + q[5] + q[6] + q[7];
    }
    for (size_t i = (size_t)blocks * 8; i < n; i++)
        total += p[i];
    munmap((void *)p, (size_t)st.st_size);
    close(fd);
    *sum_out = total;
    return now() - t;
}

static double read_once(const char *path, uint64_t *sum_out)
{
    return read_threads(path, 1, sum_out);
}

/* ---- one pipeline (child) ------------------------------------------------ */

typedef struct phase_clock {
    int64_t fiber_steps;
    double fibers_done;
} phase_clock;

static int32_t on_progress(void *user, int64_t done, int64_t total)
{
    (void)total;
    phase_clock *c = user;
    if (done == c->fiber_steps)
        c->fibers_done = now();
    return 0;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    return h;
}

static int run(const char *path, int threads)
{
    double t0 = now();
    fib_graph *g;
    CHECK(fib_model_load(path, NULL, &g));
    double t1 = now();
    int32_t n_groups;
    CHECK(fib_graph_num_groups(g, &n_groups));
    fib_color_options o;
    CHECK(fib_color_options_init(&o, sizeof o));
    o.symmetry = FIB_SYM_COVERS;
    o.tolerance = FIB_TOL_EXACT;
    o.n_threads = threads;
    phase_clock clock = {n_groups, 0};
    o.progress = on_progress;
    o.progress_user = &clock;
    fib_coloring *c;
    CHECK(fib_color(g, &o, &c));
    double t3 = now();
    fib_base *b;
    CHECK(fib_compress(g, c, &b));
    double t4 = now();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    /* what was found, and a hash of it (colours and base tensors) */
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    int64_t hidden = 0, hidden_units = 0, hidden_classes = 0;
    for (int32_t i = 0; i < n_groups; i++) {
        int64_t n = g->groups[i].n_units, k;
        CHECK(fib_coloring_num_classes(c, i, &k));
        hash = hash_bytes(hash, c->parts[i].color, (size_t)n * sizeof(int64_t));
        if (!fib_group_is_input(g, i) && !fib_group_is_output(g, i)) {
            hidden++;
            hidden_units += n;
            hidden_classes += k;
        }
    }
    const fib_graph *base = fib_base_graph(b);
    for (int32_t i = 0; i < base->n_groups; i++) {
        const fib_block_ops *ops = base->groups[i].ops;
        fib_tensor_view v;
        for (int32_t t = 0; ops && ops->tensor && ops->tensor(base, i, t, &v); t++) {
            size_t count = (size_t)(v.shape[0] - 1) * (size_t)v.row_stride +
                           (size_t)(v.shape[1] * v.shape[2] * v.shape[3]);
            hash = hash_bytes(hash, v.data, count * fib_dtype_size(v.dtype));
        }
    }
    int64_t params, base_params;
    CHECK(fib_graph_num_parameters(g, &params));
    CHECK(fib_graph_num_parameters(base, &base_params));
    printf("RESULT %d %.6f %.6f %.6f %.6f %ld %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
           " %" PRId64 " %016" PRIx64 "\n",
           threads, t1 - t0, clock.fibers_done - t1, t3 - clock.fibers_done, t4 - t3,
           ru.ru_maxrss, params, base_params, hidden, hidden_units, hidden_classes, hash);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
    return 0;
}

typedef struct result {
    int threads;
    double load, fibers, opfibers, compress;
    long maxrss_kb;
    int64_t params, base_params, hidden, hidden_units, hidden_classes;
    uint64_t hash;
} result;

static result spawn(const char *self, const char *path, int threads, int cold)
{
    if (cold)
        drop_cache(path);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d '%s' --run '%s' %d", threads, self, path,
             threads);
    FILE *p = popen(cmd, "r");
    result r;
    memset(&r, 0, sizeof r);
    char line[1024];
    int got = 0;
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "RESULT %d %lf %lf %lf %lf %ld %" SCNd64 " %" SCNd64 " %" SCNd64
                         " %" SCNd64 " %" SCNd64 " %" SCNx64,
                   &r.threads, &r.load, &r.fibers, &r.opfibers, &r.compress, &r.maxrss_kb,
                   &r.params, &r.base_params, &r.hidden, &r.hidden_units,
                   &r.hidden_classes, &r.hash) == 12)
            got = 1;
    if (!p || pclose(p) != 0 || !got) {
        fprintf(stderr, "bench_pipeline: the pipeline run with %d threads failed\n", threads);
        exit(1);
    }
    return r;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--run") == 0)
        return run(argv[2], atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "--generate") == 0) {
        generate(argv[2], shape_for(atof(argv[3])));
        return 0;
    }
    const char *env = getenv("FIB_BENCH_PARAMS");
    double params = argc > 1 ? atof(argv[1]) : env ? atof(env) : 1e9;
    const char *path = argc > 2 ? argv[2] : "pipeline_model.safetensors";
    int keep = argc > 3 && strcmp(argv[3], "keep") == 0;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self[len] = 0;
    shape s = shape_for(params);

    struct stat st;
    if (stat(path, &st) != 0) {
        printf("generating %s: d = %" PRId64 ", %" PRId64 " layers ...\n", path, s.d,
               s.layers);
        fflush(stdout);
        double t = now();
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' --generate '%s' %g", self, path, params);
        if (system(cmd) != 0 || stat(path, &st) != 0) {
            fprintf(stderr, "bench_pipeline: generating %s failed\n", path);
            return 1;
        }
        printf("generated in %.1f s\n", now() - t);
    }
    double gb = (double)st.st_size * 1e-9;
    uint64_t sum;
    drop_cache(path);
    double cold = read_once(path, &sum);
    double warm = read_once(path, &sum);
    double warm2 = read_once(path, &sum);
    warm = warm2 < warm ? warm2 : warm;
    const fib_kernels *k = fib_kernels_active();
    int omp = (fib_features() & FIB_FEATURE_OPENMP) != 0;
    printf("model file: %s, %.3f GB, kernels %s, OpenMP %s\n", path, gb, k->name,
           omp ? "yes" : "no");
    printf("read once (mmap + checksum, 1 core): cold (after POSIX_FADV_DONTNEED) %.3f s = "
           "%.2f GB/s; warm (page cache) %.3f s = %.2f GB/s\n",
           cold, gb / cold, warm, gb / warm);
    double warm_2 = INFINITY;
    for (int rep = 0; omp && rep < 2; rep++) {
        double t2 = read_threads(path, 2, &sum);
        warm_2 = t2 < warm_2 ? t2 : warm_2;
    }
    if (omp)
        printf("read once on 2 cores (warm): %.3f s = %.2f GB/s, %.2fx the 1-core read\n",
               warm_2, gb / warm_2, warm / warm_2);

    result runs[4];
    int n_runs = 0;
    runs[n_runs++] = spawn(self, path, 1, 0);
    if (omp)
        runs[n_runs++] = spawn(self, path, 2, 0);
    runs[n_runs++] = spawn(self, path, omp ? 2 : 1, 1);
    printf("weights %" PRId64 " (%.3g), base %" PRId64 " (%.1fx fewer); hidden groups %" PRId64
           ": %" PRId64 " units in %" PRId64 " classes\n",
           runs[0].params, (double)runs[0].params, runs[0].base_params,
           (double)runs[0].params / (double)runs[0].base_params, runs[0].hidden,
           runs[0].hidden_units, runs[0].hidden_classes);
    printf("\n| start | threads | load s | fibers s | opfibers s | compress s | total s | "
           "total / warm read | total / cold read | max RSS GB | RSS / file |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_runs; i++) {
        result *r = &runs[i];
        double total = r->load + r->fibers + r->opfibers + r->compress;
        double rss = (double)r->maxrss_kb * 1024e-9;
        printf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f | %.3f | %.3f |\n",
               i == n_runs - 1 ? "cold" : "warm", r->threads, r->load, r->fibers,
               r->opfibers, r->compress, total, total / warm, total / cold, rss, rss / gb);
    }
    int same = 1;
    for (int i = 1; i < n_runs; i++)
        same = same && runs[i].hash == runs[0].hash;
    printf("\nresults (colours + base tensors) identical across runs: %s (hash %016" PRIx64
           ")\n", same ? "yes" : "NO", runs[0].hash);
    double t1 = runs[0].load + runs[0].fibers + runs[0].opfibers + runs[0].compress;
    printf("targets: total <= 3 x read once: warm %.2f, cold %.2f (1 thread)", t1 / warm,
           t1 / cold);
    if (omp) {
        double t2 = runs[1].load + runs[1].fibers + runs[1].opfibers + runs[1].compress;
        printf("; 2 threads: warm %.2f, cold %.2f; speed-up 2 vs 1 threads %.2fx (target 1.6; "
               "a warm read speeds up %.2fx on this host in the same run)",
               t2 / warm, t2 / cold, t1 / t2, warm / warm_2);
    }
    double worst = 0;
    for (int i = 0; i < n_runs; i++)
        worst = fmax(worst, (double)runs[i].maxrss_kb * 1024e-9 / gb);
    printf("; peak RSS / file size %.3f (target 1.10)\n", worst);
    if (!keep)
        unlink(path);
    return same ? 0 : 1;
}
