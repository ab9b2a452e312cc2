/* A mapped model's pages let go once read (fib_group_drop_pages, the
 * safetensors reader's fib_st_drop_pages): the memory a file was read into
 * and any memory outside the mapping keep their bytes, dropped pages read
 * back the file's values, and a model mapped (whose colouring, compression
 * and budget drop its pages as they go) gives exactly the classes and base
 * of the same model copied into memory (nothing to drop). */
#include "compress/compress.h"
#include "io/safetensors.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];

/* 128 x 128 float32 layers: 64 KiB each, whole pages to drop */
#define WIDTH 128
#define LAYERS 4
#define OUTPUTS 10

static uint64_t lcg = 22;

static float next_weight(void)
{
    lcg = lcg * 6364136223846793005u + 1442695040888963407u;
    return (float)((int64_t)(lcg >> 40) % 2001 - 1000) / 512.0f;
}

/* An nn.Sequential state dict: LAYERS dense WIDTH x WIDTH layers with
 * biases, rows equal in pairs past the first layer and columns equal in
 * pairs past the first (so fibers and opfibers merge), then OUTPUTS. */
static void write_chain(const char *path)
{
    fib_st_out t[2 * (LAYERS + 1)];
    float *w[LAYERS + 1], *b[LAYERS + 1];
    char names[2 * (LAYERS + 1)][16];
    for (int l = 0; l <= LAYERS; l++) {
        int64_t rows = l == LAYERS ? OUTPUTS : WIDTH;
        w[l] = malloc((size_t)(rows * WIDTH) * sizeof(float));
        b[l] = malloc((size_t)rows * sizeof(float));
        for (int64_t i = 0; i < rows; i++) {
            bool copy_row = l > 0 && l < LAYERS && i % 2 == 1;
            for (int64_t k = 0; k < WIDTH; k++) {
                bool copy_col = l > 0 && k % 2 == 1;
                w[l][i * WIDTH + k] = copy_row   ? w[l][(i - 1) * WIDTH + k]
                                      : copy_col ? w[l][i * WIDTH + k - 1]
                                                 : next_weight();
            }
            b[l][i] = copy_row ? b[l][i - 1] : next_weight() / 8;
        }
        snprintf(names[2 * l], sizeof names[0], "%d.weight", 2 * l);
        snprintf(names[2 * l + 1], sizeof names[0], "%d.bias", 2 * l);
        t[2 * l] = (fib_st_out){names[2 * l], FIB_DTYPE_F32, 2, {rows, WIDTH}, w[l]};
        t[2 * l + 1] = (fib_st_out){names[2 * l + 1], FIB_DTYPE_F32, 1, {rows}, b[l]};
    }
    CHECK_OK(fib_st_write(path, t, 2 * (LAYERS + 1), NULL, NULL, 0));
    for (int l = 0; l <= LAYERS; l++) {
        free(w[l]);
        free(b[l]);
    }
}

/* The file's image read into memory, and the offset of tensor "0.weight". */
static unsigned char *read_image(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *image = malloc(*size);
    CHECK(image && fread(image, 1, *size, f) == *size);
    fclose(f);
    return image;
}

/* Bytes read into the process's memory are its only copy: dropping their
 * pages would zero them. */
static void test_dropping_pages_keeps_a_memory_image(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/image.safetensors", tmpdir);
    write_chain(path);
    size_t size = 0;
    unsigned char *image = read_image(path, &size), *kept = malloc(size);
    memcpy(kept, image, size);
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_parse("image", image, size, &f));
    const fib_st_tensor *t = f ? fib_st_find(f, "0.weight") : NULL;
    CHECK(t != NULL && !f->mapped);
    if (t) {
        fib_st_drop_pages(f, t->data, (size_t)t->n_elements * sizeof(float));
        fib_st_drop_pages(f, image, size);
    }
    CHECK(memcmp(image, kept, size) == 0);
    fib_st_close(f);
    free(image);
    free(kept);
    unlink(path);
}

/* Dropped pages of the mapping read the file's values again; memory outside
 * the mapping is never dropped through it. */
static void test_dropped_pages_read_back_the_file(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/mapped.safetensors", tmpdir);
    write_chain(path);
    size_t size = 0;
    unsigned char *image = read_image(path, &size);
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_open(path, &f));
    CHECK(f && f->mapped && f->size == size);
    const fib_st_tensor *t = f ? fib_st_find(f, "2.weight") : NULL;
    CHECK(t != NULL);
    if (t && image) {
        size_t bytes = (size_t)t->n_elements * sizeof(float);
        const unsigned char *in_image = image + ((const unsigned char *)t->data - f->bytes);
        CHECK(memcmp(t->data, in_image, bytes) == 0); /* resident now */
        fib_st_drop_pages(f, f->bytes, f->size);
        CHECK(memcmp(t->data, in_image, bytes) == 0);
        fib_st_drop_pages(f, t->data, bytes);
        CHECK(memcmp(f->bytes, image, size) == 0);
        /* another buffer, however large, is not the file's */
        unsigned char *other = malloc(size), *kept = malloc(size);
        memcpy(other, image, size);
        memcpy(kept, image, size);
        fib_st_drop_pages(f, other, size);
        fib_st_drop_pages(f, other + size / 2, size / 2);
        CHECK(memcmp(other, kept, size) == 0);
        free(other);
        free(kept);
    }
    fib_st_close(f);
    free(image);
    unlink(path);
}

static void check_same_graphs(const fib_graph *a, const fib_graph *b)
{
    int32_t na = -1, nb = -2;
    CHECK_OK(fib_graph_num_groups(a, &na));
    CHECK_OK(fib_graph_num_groups(b, &nb));
    CHECK(na == nb);
    for (int32_t i = 1; na == nb && i < na; i++) {
        int64_t ua = 0, ub = 0, n_in = 0;
        int32_t src = 0, op_a = 0, op_b = -1;
        CHECK_OK(fib_graph_group_info(a, i, &op_a, &ua, NULL, NULL, NULL, NULL, NULL));
        CHECK_OK(fib_graph_group_info(b, i, &op_b, &ub, NULL, NULL, NULL, NULL, NULL));
        CHECK_OK(fib_graph_group_source(a, i, 0, &src));
        CHECK_OK(fib_graph_group_info(a, src, NULL, &n_in, NULL, NULL, NULL, NULL, NULL));
        CHECK(ua == ub && op_a == op_b);
        if (ua != ub || op_a != op_b || op_a != FIB_OP_DENSE)
            continue; /* a sum has no weights */
        double *wa = calloc((size_t)(ua * n_in), 8), *wb = calloc((size_t)(ua * n_in), 8);
        double *ba = calloc((size_t)ua, 8), *bb = calloc((size_t)ua, 8);
        CHECK_OK(fib_graph_read_dense(a, i, FIB_DTYPE_F64, wa, n_in, ba));
        CHECK_OK(fib_graph_read_dense(b, i, FIB_DTYPE_F64, wb, n_in, bb));
        CHECK(memcmp(wa, wb, (size_t)(ua * n_in) * 8) == 0);
        CHECK(memcmp(ba, bb, (size_t)ua * 8) == 0);
        free(wa);
        free(wb);
        free(ba);
        free(bb);
    }
}

static void check_same_bases(const fib_base *a, const fib_base *b)
{
    CHECK(a && b);
    if (a && b)
        check_same_graphs(fib_base_graph(a), fib_base_graph(b));
}

/* The budget of the mapped model equals the copied model's and removes
 * something; the mapped weights are still the file's afterwards. */
static void check_same_budget(const fib_graph *mapped, const fib_graph *copied, double fraction)
{
    fib_base *bm = NULL, *bc = NULL;
    CHECK_OK(fib_compress_to_budget(mapped, fraction, NULL, &bm));
    CHECK_OK(fib_compress_to_budget(copied, fraction, NULL, &bc));
    check_same_bases(bm, bc);
    int64_t kept = 0, total = 0;
    CHECK_OK(fib_graph_num_parameters(fib_base_graph(bm), &kept));
    CHECK_OK(fib_graph_num_parameters(mapped, &total));
    CHECK(kept > 0 && kept < total);
    fib_base_free(bm);
    fib_base_free(bc);
    check_same_graphs(mapped, copied);
}

/* The model at path loaded twice: mapped (one resource, its pages to drop)
 * and copied (no resource). Returns whether both loaded. */
static int load_mapped_and_copied(const char *path, fib_graph **mapped, fib_graph **copied)
{
    fib_load_options lo;
    fib_load_options_init(&lo, sizeof lo);
    CHECK_OK(fib_model_load(path, &lo, mapped));
    lo.copy = 1;
    CHECK_OK(fib_model_load(path, &lo, copied));
    CHECK(*mapped && (*mapped)->n_resources == 1 && (*mapped)->resources[0].drop_pages);
    CHECK(*copied && (*copied)->n_resources == 0);
    return *mapped && *copied;
}

/* The model mapped (its colouring, compression and budget drop pages as
 * they go) and copied (no pages to drop): the same classes and bases, and
 * the mapped weights still the file's afterwards. */
static void test_mapped_model_equals_copied_model(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/chain.safetensors", tmpdir);
    write_chain(path);
    fib_graph *mapped = NULL, *copied = NULL;
    if (!load_mapped_and_copied(path, &mapped, &copied))
        goto done;
    for (int32_t sym = FIB_SYM_FIBERS; sym <= FIB_SYM_COVERS; sym++) {
        fib_color_options o;
        fib_color_options_init(&o, sizeof o);
        o.symmetry = sym;
        fib_coloring *cm = NULL, *cc = NULL;
        CHECK_OK(fib_color(mapped, &o, &cm));
        CHECK_OK(fib_color(copied, &o, &cc));
        bool merged = false;
        for (int32_t i = 0; cm && cc && i < mapped->n_groups; i++) {
            CHECK(cm->parts[i].n_classes == cc->parts[i].n_classes);
            CHECK(memcmp(cm->parts[i].color, cc->parts[i].color,
                         (size_t)cm->parts[i].n_units * 8) == 0);
            merged = merged || cm->parts[i].n_classes < cm->parts[i].n_units;
        }
        CHECK(merged);
        static const int32_t dtypes[] = {FIB_DTYPE_F32, FIB_DTYPE_F64};
        for (int d = 0; cm && cc && d < 2; d++) {
            fib_compress_options co;
            fib_compress_options_init(&co, sizeof co);
            co.dtype = dtypes[d];
            fib_base *bm = NULL, *bc = NULL;
            CHECK_OK(fib_compress_ex(mapped, cm, &co, &bm));
            CHECK_OK(fib_compress_ex(copied, cc, &co, &bc));
            check_same_bases(bm, bc);
            fib_base_free(bm);
            fib_base_free(bc);
        }
        fib_coloring_free(cm);
        fib_coloring_free(cc);
    }
    check_same_budget(mapped, copied, 0.3);
done:
    fib_graph_free(mapped);
    fib_graph_free(copied);
    unlink(path);
}

/* A residual network (not a chain: the graph budget) of WIDTH-unit dense
 * layers, x -> relu(W1 x) -> h + W2 h twice -> OUTPUTS, saved as a model
 * file through the public constructors. */
static void write_residual(const char *path)
{
    float *w[6], *b[6];
    fib_graph *g = NULL;
    CHECK_OK(fib_graph_create(&g));
    int32_t at = -1, inner = -1;
    CHECK_OK(fib_graph_add_input(g, WIDTH, &at));
    for (int l = 0; l < 6; l++) {
        int64_t rows = l == 5 ? OUTPUTS : WIDTH;
        w[l] = malloc((size_t)(rows * WIDTH) * sizeof(float));
        b[l] = malloc((size_t)rows * sizeof(float));
        for (int64_t i = 0; i < rows * WIDTH; i++)
            w[l][i] = next_weight();
        for (int64_t i = 0; i < rows; i++)
            b[l][i] = next_weight() / 8;
        bool residual = l == 2 || l == 4;
        CHECK_OK(fib_graph_add_dense(g, residual ? inner : at, rows, FIB_DTYPE_F32, w[l], WIDTH,
                                     b[l], 0, residual ? &inner : &at));
        if (l == 0 || l == 1 || l == 3)
            CHECK_OK(fib_graph_set_activation(g, at, FIB_ACT_RELU, 0));
        if (l == 1 || l == 3)
            inner = at; /* the branch reads the relu output h */
        if (residual)
            CHECK_OK(fib_graph_add_sum(g, at, inner, &at));
    }
    CHECK_OK(fib_model_save(g, path, FIB_DTYPE_F32));
    fib_graph_free(g);
    for (int l = 0; l < 6; l++) {
        free(w[l]);
        free(b[l]);
    }
}

/* The graph budget (energies, each set's rows and the weighted base rows
 * drop a mapped file's pages as they go) of a mapped residual model equals
 * the copied model's, and the mapped weights are still the file's. */
static void test_mapped_graph_budget_equals_copied(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/residual.safetensors", tmpdir);
    write_residual(path);
    fib_graph *mapped = NULL, *copied = NULL;
    if (!load_mapped_and_copied(path, &mapped, &copied))
        goto done;
    int32_t sums = 0;
    for (int32_t i = 0; i < mapped->n_groups; i++) {
        int32_t op = 0;
        CHECK_OK(fib_graph_group_info(mapped, i, &op, NULL, NULL, NULL, NULL, NULL, NULL));
        sums += op == FIB_OP_SUM;
    }
    CHECK(sums == 2);
    check_same_budget(mapped, copied, 0.5);
done:
    fib_graph_free(mapped);
    fib_graph_free(copied);
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-dropped-pages-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_dropping_pages_keeps_a_memory_image);
    RUN(test_dropped_pages_read_back_the_file);
    RUN(test_mapped_model_equals_copied_model);
    RUN(test_mapped_graph_budget_equals_copied);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
