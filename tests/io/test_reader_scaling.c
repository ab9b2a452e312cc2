/* Readers whose work must grow as n log n in their input: files with very
 * many tensors. meson runs each case with a timeout that a reader doing a
 * search per tensor (quadratic) exceeds many times over on these sizes,
 * while an n log n reader finishes in a small fraction of it.
 *
 * usage: test_io_reader_scaling state_dict | structured */
#include "compress/compress.h"
#include "io/safetensors.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];

/* A state dict of n one-unit Linear layers "<i>.weight" (weight 1) with
 * "0.bias" = 0.5: the file lists them in name order ("0", "1", "10",
 * "100", ...), not layer order, so the loader must sort them. */
static void test_state_dict_of_many_layers(int64_t n)
{
    fib_st_out *t = calloc((size_t)n + 1, sizeof *t);
    char *names = calloc((size_t)n + 1, 24);
    static const float one = 1.0f, half = 0.5f;
    CHECK(t && names);
    if (!t || !names)
        return;
    for (int64_t i = 0; i < n; i++) {
        snprintf(names + i * 24, 24, "%lld.weight", (long long)i);
        t[i] = (fib_st_out){names + i * 24, FIB_DTYPE_F32, 2, {1, 1}, &one};
    }
    t[n] = (fib_st_out){"0.bias", FIB_DTYPE_F32, 1, {1}, &half};
    char path[400];
    snprintf(path, sizeof path, "%s/many_layers.safetensors", tmpdir);
    CHECK_OK(fib_st_write(path, t, n + 1, NULL, NULL, 0));
    free(t);
    free(names);
    fib_graph *g = NULL;
    CHECK_OK(fib_model_load(path, NULL, &g));
    unlink(path);
    if (!g)
        return;
    int32_t n_groups = 0;
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    CHECK(n_groups == n + 1);
    /* layers in index order: group k + 1 is layer k */
    CHECK(strcmp(fib_graph_group_name(g, 1), "0") == 0);
    CHECK(strcmp(fib_graph_group_name(g, 11), "10") == 0);
    char last[24];
    snprintf(last, sizeof last, "%lld", (long long)(n - 1));
    CHECK(strcmp(fib_graph_group_name(g, (int32_t)n), last) == 0);
    double x = 2.0, y = 0.0;
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, &x, &y));
    CHECK(y == 2.5); /* relu(2 + 0.5), then weight 1 all the way */
    fib_graph_free(g);
}

/* A saved chain of n dense groups: the loader finds every group's tensors
 * by name. */
static void test_structured_file_of_many_groups(int64_t n)
{
    fib_graph *g = NULL;
    CHECK_OK(fib_graph_create(&g));
    int32_t id = -1;
    CHECK_OK(fib_graph_add_input(g, 1, &id));
    for (int64_t i = 0; i < n; i++) {
        double w = i == 0 ? 3.0 : 1.0;
        CHECK_OK(fib_graph_add_dense(g, id, 1, FIB_DTYPE_F64, &w, 1, NULL, FIB_COPY, &id));
    }
    char path[400];
    snprintf(path, sizeof path, "%s/many_groups.safetensors", tmpdir);
    CHECK_OK(fib_model_save(g, path, 0));
    fib_graph_free(g);
    fib_graph *h = NULL;
    CHECK_OK(fib_model_load(path, NULL, &h));
    unlink(path);
    if (!h)
        return;
    int32_t n_groups = 0;
    CHECK_OK(fib_graph_num_groups(h, &n_groups));
    CHECK(n_groups == n + 1);
    double x = 2.0, y = 0.0;
    CHECK_OK(fib_graph_forward(h, 1, FIB_DTYPE_F64, &x, &y));
    CHECK(y == 6.0);
    fib_graph_free(h);
}

static void state_dict(void) { test_state_dict_of_many_layers(500000); }
static void structured(void) { test_structured_file_of_many_groups(150000); }

int main(int argc, char **argv)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-scaling-test-XXXXXX");
    if (argc != 2 || !mkdtemp(tmpdir)) {
        fprintf(stderr, "usage: %s state_dict | structured\n", argv[0]);
        return 1;
    }
    if (strcmp(argv[1], "state_dict") == 0)
        RUN(state_dict);
    else if (strcmp(argv[1], "structured") == 0)
        RUN(structured);
    else
        test_failures++;
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
