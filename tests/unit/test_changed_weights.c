/* Borrowed weights that become NaN or infinite after the graph was built
 * (the caller's memory, or a mapped model file rewritten on disk) are
 * refused where they are met: the forward pass, fib_compress,
 * fib_coloring_is_balanced and fib_model_save name the group, tensor and
 * element, and no file is written. They used to give a
 * forward output of 0 (ReLU of NaN) and a saved file the loader refuses. */
#include "checks.h"
#include "testing.h"

#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];

/* 3 inputs -> 2 ReLU units (borrowed weights w, bias b) -> 1 linear */
static double w[2 * 3] = {0.5, -1.0, 2.0, 1.5, 0.25, -0.5};
static double b[2] = {0.1, -0.2};
static const double w_out[2] = {1.0, -1.0};

static fib_graph *borrowing_graph(void)
{
    fib_graph *g = NULL;
    int32_t id = -1;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 3, &id));
    CHECK_OK(fib_graph_add_dense(g, id, 2, FIB_DTYPE_F64, w, 3, b, 0, &id));
    CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_set_group_name(g, id, "hidden"));
    CHECK_OK(fib_graph_add_dense(g, id, 1, FIB_DTYPE_F64, w_out, 2, NULL, FIB_COPY, &id));
    return g;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void changed_borrowed_weights_are_refused(void)
{
    fib_graph *g = borrowing_graph();
    const double x[3] = {1.0, 2.0, 3.0};
    double y = 0.0;
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, &y));
    char path[400];
    snprintf(path, sizeof path, "%s/changed.safetensors", tmpdir);

    const double nan_or_inf[2] = {NAN, -INFINITY};
    const char *word[2] = {"NaN", "infinite"};
    for (int k = 0; k < 2; k++) {
        double kept = w[4];
        w[4] = nan_or_inf[k]; /* row 1, column 1 */
        y = 42.0;
        expect(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, &y), FIB_E_NONFINITE,
               "group 1 ('hidden'): weight [1, 1]", "forward with a changed weight");
        CHECK(strstr(fib_last_error(), word[k]) != NULL);
        CHECK(y == 42.0);
        double activity[2];
        expect(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, x, 1, activity), FIB_E_NONFINITE,
               "weight [1, 1]", "forward_group with a changed weight");
        expect(fib_model_save(g, path, 0), FIB_E_NONFINITE, "group 1 ('hidden'): weight [1, 1]",
               "save with a changed weight");
        CHECK(strstr(fib_last_error(), path) != NULL);
        CHECK(!file_exists(path));
        /* a base of it would hold the value too; a balance check cannot
         * compare it */
        fib_coloring *c = NULL;
        fib_base *base = NULL;
        int32_t balanced = -1;
        CHECK_OK(fib_coloring_create(g, FIB_SYM_FIBERS, &c));
        expect(fib_coloring_is_balanced(g, c, 0.0, &balanced), FIB_E_NONFINITE,
               "group 1 ('hidden'): weight [1, 1]", "is_balanced with a changed weight");
        CHECK(balanced == -1);
        expect(fib_compress(g, c, &base), FIB_E_NONFINITE, "group 1 ('hidden'): weight [1, 1]",
               "compress with a changed weight");
        CHECK(base == NULL);
        fib_coloring_free(c);
        w[4] = kept;
    }
    /* a bias too, and a base-save of a graph saved as float32 */
    b[1] = NAN;
    expect(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, &y), FIB_E_NONFINITE, "bias [1]",
           "forward with a changed bias");
    expect(fib_model_save(g, path, FIB_DTYPE_F32), FIB_E_NONFINITE, "bias [1]",
           "save with a changed bias");
    CHECK(!file_exists(path));
    b[1] = -0.2;

    /* restored, everything works again and the file loads back */
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, &y));
    CHECK_OK(fib_model_save(g, path, 0));
    fib_graph *back = NULL;
    CHECK_OK(fib_model_load(path, NULL, &back));
    fib_graph_free(back);
    unlink(path);
    fib_graph_free(g);
}

/* Finite values that overflow float32 would make a file the loader refuses. */
static void save_refuses_values_float32_cannot_hold(void)
{
    fib_graph *g = borrowing_graph();
    double kept = w[2];
    w[2] = 1e300;
    char path[400];
    snprintf(path, sizeof path, "%s/overflow.safetensors", tmpdir);
    expect(fib_model_save(g, path, FIB_DTYPE_F32), FIB_E_NONFINITE,
           "group 1 ('hidden'): weight [0, 2] = 1e+300 does not fit in float32",
           "save of 1e300 as float32");
    CHECK(!file_exists(path));
    CHECK_OK(fib_model_save(g, path, FIB_DTYPE_F64));
    unlink(path);
    w[2] = kept;
    fib_graph_free(g);
}

/* A graph that borrows from a mapped file (fib_model_load, copy 0) whose
 * bytes are rewritten on disk in place. */
static void rewritten_mapped_file_is_refused(void)
{
    fib_graph *g = borrowing_graph();
    char path[400], again[400];
    snprintf(path, sizeof path, "%s/mapped.safetensors", tmpdir);
    snprintf(again, sizeof again, "%s/again.safetensors", tmpdir);
    CHECK_OK(fib_model_save(g, path, FIB_DTYPE_F64));
    fib_graph_free(g);
    fib_graph *mapped = NULL;
    CHECK_OK(fib_model_load(path, NULL, &mapped));
    if (!mapped)
        return;
    /* find the bytes of w[4] in the file and overwrite them with NaN */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    unsigned char *bytes = malloc((size_t)st.st_size);
    CHECK(bytes && pread(fd, bytes, (size_t)st.st_size, 0) == st.st_size);
    int64_t at = -1;
    for (int64_t i = 0; bytes && i + 8 <= st.st_size && at < 0; i++)
        if (memcmp(bytes + i, &w[4], 8) == 0)
            at = i;
    CHECK(at >= 0);
    const double nan = NAN;
    CHECK(at >= 0 && pwrite(fd, &nan, 8, at) == 8);
    close(fd);
    free(bytes);

    const double x[3] = {1.0, 2.0, 3.0};
    double y = 0.0;
    expect(fib_graph_forward(mapped, 1, FIB_DTYPE_F64, x, &y), FIB_E_NONFINITE,
           "weight [1, 1] is NaN", "forward of a rewritten mapped file");
    expect(fib_model_save(mapped, again, 0), FIB_E_NONFINITE, "weight [1, 1] is NaN",
           "save of a rewritten mapped file");
    CHECK(!file_exists(again));
    fib_graph_free(mapped);
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-changed-weights-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(changed_borrowed_weights_are_refused);
    RUN(save_refuses_values_float32_cannot_hold);
    RUN(rewritten_mapped_file_is_refused);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
