/* BERT checkpoint directories read by fib_model_load, in C so that the
 * sanitizer and valgrind jobs run the reader's bert path (the Python tests
 * compare its models with a reference encoder): a tiny two-layer encoder
 * with pooler and pre-training heads, with planted intermediate twins and
 * duplicated residual dimensions, loads with two inputs, colours the
 * planted classes together and compresses; a base with only MLP twins is
 * written as a bert directory (streamed) that gives the same logits; a
 * missing tensor of the last layer and a refused config key are named, and
 * nothing leaks on any path. The embeddings are read in place from the
 * mapping; the decoder tied to the word embeddings has its values checked
 * for finiteness once, an untied one whole. */
#include "blocks/blocks.h"
#include "compress/compress.h"
#include "io/safetensors.h"
#include "kernels/stored.h"
#include "testing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures;

enum { VOCAB = 7, HIDDEN = 8, INTER = 6, HEADS = 2, LAYERS = 2, POSITIONS = 5, TYPES = 2,
       MAX_TENSORS = 64 };

static char tmpdir[256];
static uint64_t rng = 99;

static float uniform(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

typedef struct tensors {
    fib_st_out t[MAX_TENSORS];
    char names[MAX_TENSORS][96];
    float *data[MAX_TENSORS];
    int n;
} tensors;

/* A random tensor (rows x cols; cols 0: a vector of rows), norm weights
 * near 1. */
static float *add(tensors *s, const char *name, int64_t rows, int64_t cols)
{
    int i = s->n++;
    snprintf(s->names[i], sizeof s->names[i], "%s", name);
    int64_t n = rows * (cols ? cols : 1);
    float *a = malloc((size_t)n * sizeof *a);
    bool gamma = strstr(name, "LayerNorm.weight") != NULL;
    for (int64_t k = 0; a && k < n; k++)
        a[k] = gamma ? 1.0f + 0.5f * uniform() : uniform();
    s->data[i] = a;
    s->t[i] = (fib_st_out){s->names[i], FIB_DTYPE_F32, cols ? 2 : 1, {rows, cols}, a};
    return a;
}

/* With residual_twins, residual dimension 5 copies 2 in every table and
 * projection making the stream; intermediate unit 4 of every layer copies
 * unit 1 (its output.dense column re-split). The masked-LM head's
 * decoder is tied to the word embeddings, unless extra_key sets
 * tie_word_embeddings false: then its own weight is stored. */
static void write_bert(const char *dir, const char *extra_key, const char *drop,
                       bool residual_twins)
{
    tensors s;
    memset(&s, 0, sizeof s);
    const char *tables[3] = {"bert.embeddings.word_embeddings.weight",
                             "bert.embeddings.position_embeddings.weight",
                             "bert.embeddings.token_type_embeddings.weight"};
    const int64_t rows[3] = {VOCAB, POSITIONS, TYPES};
    for (int i = 0; i < 3; i++) {
        float *w = add(&s, tables[i], rows[i], HIDDEN);
        for (int64_t r = 0; r < rows[i] && residual_twins; r++)
            w[r * HIDDEN + 5] = w[r * HIDDEN + 2];
    }
    char name[96];
    const char *norms[1 + 2 * LAYERS];
    char norm_names[1 + 2 * LAYERS][96];
    int n_norms = 0;
    norms[n_norms++] = "bert.embeddings.LayerNorm";
    for (int l = 0; l < LAYERS; l++) {
        const char *square[4] = {"attention.self.query", "attention.self.key",
                                 "attention.self.value", "attention.output.dense"};
        for (int m = 0; m < 4; m++) {
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s.weight", l, square[m]);
            float *w = add(&s, name, HIDDEN, HIDDEN);
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s.bias", l, square[m]);
            float *b = add(&s, name, HIDDEN, 0);
            if (m == 3 && residual_twins) {
                memcpy(w + 5 * HIDDEN, w + 2 * HIDDEN, HIDDEN * sizeof *w);
                b[5] = b[2];
            }
        }
        snprintf(name, sizeof name, "bert.encoder.layer.%d.intermediate.dense.weight", l);
        float *up = add(&s, name, INTER, HIDDEN);
        snprintf(name, sizeof name, "bert.encoder.layer.%d.intermediate.dense.bias", l);
        float *up_b = add(&s, name, INTER, 0);
        snprintf(name, sizeof name, "bert.encoder.layer.%d.output.dense.weight", l);
        float *down = add(&s, name, HIDDEN, INTER);
        snprintf(name, sizeof name, "bert.encoder.layer.%d.output.dense.bias", l);
        float *down_b = add(&s, name, HIDDEN, 0);
        if (l == 0 || !residual_twins) {
            memcpy(up + 4 * HIDDEN, up + 1 * HIDDEN, HIDDEN * sizeof *up);
            up_b[4] = up_b[1];
            for (int r = 0; r < HIDDEN; r++) {
                float total = down[r * INTER + 1];
                down[r * INTER + 1] = 0.25f * total;
                down[r * INTER + 4] = 0.75f * total;
            }
        }
        if (residual_twins) {
            memcpy(down + 5 * INTER, down + 2 * INTER, INTER * sizeof *down);
            down_b[5] = down_b[2];
        }
        snprintf(norm_names[n_norms], 96, "bert.encoder.layer.%d.attention.output.LayerNorm", l);
        norms[n_norms] = norm_names[n_norms];
        n_norms++;
        snprintf(norm_names[n_norms], 96, "bert.encoder.layer.%d.output.LayerNorm", l);
        norms[n_norms] = norm_names[n_norms];
        n_norms++;
    }
    for (int i = 0; i < n_norms; i++) {
        snprintf(name, sizeof name, "%s.weight", norms[i]);
        float *w = add(&s, name, HIDDEN, 0);
        snprintf(name, sizeof name, "%s.bias", norms[i]);
        float *b = add(&s, name, HIDDEN, 0);
        if (residual_twins) {
            w[5] = w[2];
            b[5] = b[2];
        }
    }
    add(&s, "bert.pooler.dense.weight", HIDDEN, HIDDEN);
    add(&s, "bert.pooler.dense.bias", HIDDEN, 0);
    add(&s, "cls.predictions.bias", VOCAB, 0);
    add(&s, "cls.predictions.transform.dense.weight", HIDDEN, HIDDEN);
    add(&s, "cls.predictions.transform.dense.bias", HIDDEN, 0);
    add(&s, "cls.predictions.transform.LayerNorm.weight", HIDDEN, 0);
    add(&s, "cls.predictions.transform.LayerNorm.bias", HIDDEN, 0);
    add(&s, "cls.seq_relationship.weight", 2, HIDDEN);
    if (strstr(extra_key, "\"tie_word_embeddings\": false"))
        add(&s, "cls.predictions.decoder.weight", VOCAB, HIDDEN);
    fib_st_out kept[MAX_TENSORS];
    int64_t n = 0;
    for (int i = 0; i < s.n; i++)
        if (!drop || strcmp(s.t[i].name, drop) != 0)
            kept[n++] = s.t[i];
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(fib_st_write(path, kept, n, NULL, NULL, 0));
    for (int i = 0; i < s.n; i++)
        free(s.data[i]);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f,
            "{\"architectures\": [\"BertForPreTraining\"], \"model_type\": \"bert\",\n"
            " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,\n"
            " \"num_attention_heads\": %d, \"max_position_embeddings\": %d,\n"
            " \"type_vocab_size\": %d, \"vocab_size\": %d, \"hidden_act\": \"gelu\",\n"
            " \"layer_norm_eps\": 1e-12, \"position_embedding_type\": \"absolute\"%s}\n",
            HIDDEN, INTER, LAYERS, HEADS, POSITIONS, TYPES, VOCAB, extra_key);
    fclose(f);
}

static void make_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmpdir, name);
    CHECK(mkdir(out, 0700) == 0);
}

static int32_t group_named(const fib_graph *g, const char *name)
{
    int32_t n = 0;
    CHECK_OK(fib_graph_num_groups(g, &n));
    for (int32_t i = 0; i < n; i++) {
        const char *got = fib_graph_group_name(g, i);
        if (got && strcmp(got, name) == 0)
            return i;
    }
    return -1;
}

/* Units i and j share a class and every other pair does not. */
static void only_pair(const fib_coloring *c, int32_t group, int64_t n, int i, int j)
{
    CHECK(group >= 0);
    if (group < 0)
        return;
    int64_t colors[HIDDEN > INTER ? HIDDEN : INTER];
    CHECK_OK(fib_coloring_colors(c, group, colors, n));
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            CHECK((colors[a] == colors[b]) == (a == i && b == j));
}

static void bert_planted_classes_found_and_merged(void)
{
    char dir[400];
    make_dir(dir, sizeof dir, "bert");
    write_bert(dir, "", NULL, true);
    fib_graph *g = NULL;
    CHECK_OK(fib_model_load(dir, NULL, &g));
    if (!g)
        return;
    int64_t n_in = 0, n_out = 0;
    CHECK_OK(fib_graph_io_width(g, &n_in, &n_out));
    CHECK(n_in == (VOCAB + TYPES) * POSITIONS); /* input_ids, token_type_ids */
    CHECK(n_out == VOCAB * POSITIONS);          /* the masked-LM logits */
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    if (c) {
        only_pair(c, group_named(g, "bert.encoder.layer.0.intermediate.dense"), INTER, 1, 4);
        only_pair(c, group_named(g, "bert.encoder.layer.1.intermediate.dense"), INTER, -1, -1);
        only_pair(c, group_named(g, "bert.encoder.layer.1.attention.output.LayerNorm"), HIDDEN,
                  2, 5);
        only_pair(c, group_named(g, "bert.encoder.layer.1.output.LayerNorm"), HIDDEN, 2, 5);
        fib_base *base = NULL;
        CHECK_OK(fib_compress(g, c, &base));
        fib_base_free(base);
    }
    fib_coloring_free(c);
    fib_graph_free(g);
}

static void refused(const char *name, const char *extra_key, const char *drop,
                    const char *needle)
{
    char dir[400];
    make_dir(dir, sizeof dir, name);
    write_bert(dir, extra_key, drop, true);
    fib_graph *g = NULL;
    CHECK(fib_model_load(dir, NULL, &g) != FIB_OK);
    CHECK(g == NULL);
    CHECK(strstr(fib_last_error(), needle) != NULL);
    if (!strstr(fib_last_error(), needle))
        fprintf(stderr, "     message: %s\n", fib_last_error());
}

static void bert_refusals_name_what(void)
{
    refused("decoder", ", \"is_decoder\": true", NULL, "key 'is_decoder' is not supported");
    refused("missing", "", "bert.encoder.layer.1.output.LayerNorm.bias",
            "tensor 'bert.encoder.layer.1.output.LayerNorm.bias' is missing");
}

/* A random one-hot input: token ids, then token types. */
static void one_hot_input(float *x, int batch)
{
    int64_t width = (VOCAB + TYPES) * POSITIONS;
    memset(x, 0, (size_t)(batch * width) * sizeof *x);
    for (int b = 0; b < batch; b++)
        for (int p = 0; p < POSITIONS; p++) {
            int token = (int)((uniform() + 0.5f) * VOCAB) % VOCAB;
            int type = (int)((uniform() + 0.5f) * TYPES) % TYPES;
            x[b * width + p * VOCAB + token] = 1.0f;
            x[b * width + VOCAB * POSITIONS + p * TYPES + type] = 1.0f;
        }
}

/* Only MLP twins, alike in both layers: fib_base_save_checkpoint writes a
 * bert directory (streamed), which loads and gives the original's logits;
 * the pooler and next-sentence head are copied as stored. */
static void bert_base_directory_gives_same_logits(void)
{
    char dir[400], out[450];
    make_dir(dir, sizeof dir, "mlp_twins");
    write_bert(dir, "", NULL, false);
    snprintf(out, sizeof out, "%s/base", tmpdir);
    fib_graph *g = NULL, *b = NULL;
    fib_coloring *c = NULL;
    fib_base *base = NULL;
    CHECK_OK(fib_model_load(dir, NULL, &g));
    if (g)
        CHECK_OK(fib_color(g, NULL, &c));
    if (c)
        CHECK_OK(fib_compress(g, c, &base));
    int32_t saved = 0;
    char why[300] = "";
    if (base)
        CHECK_OK(fib_base_save_checkpoint(base, g, dir, out, 0, &saved, why, sizeof why));
    CHECK(saved == FIB_SAVED_CHECKPOINT);
    if (saved == FIB_SAVED_CHECKPOINT)
        CHECK_OK(fib_model_load(out, NULL, &b));
    int32_t inter = b ? group_named(b, "bert.encoder.layer.1.intermediate.dense") : -1;
    int64_t units = 0;
    if (inter >= 0)
        CHECK_OK(fib_graph_group_info(b, inter, NULL, &units, NULL, NULL, NULL, NULL, NULL));
    CHECK(units == INTER - 1);
    enum { BATCH = 3 };
    static float x[BATCH * (VOCAB + TYPES) * POSITIONS];
    static float want[BATCH * VOCAB * POSITIONS], got[BATCH * VOCAB * POSITIONS];
    one_hot_input(x, BATCH);
    if (b) {
        CHECK_OK(fib_graph_forward(g, BATCH, FIB_DTYPE_F32, x, want));
        CHECK_OK(fib_graph_forward(b, BATCH, FIB_DTYPE_F32, x, got));
        double diff = 0, scale = 0;
        for (int i = 0; i < BATCH * VOCAB * POSITIONS; i++) {
            diff = fabs(got[i] - want[i]) > diff ? fabs(got[i] - want[i]) : diff;
            scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
        }
        CHECK(diff <= 1e-5 * scale);
    }
    char path[520];
    fib_st_file *original = NULL, *written = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(fib_st_open(path, &original));
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    CHECK_OK(fib_st_open(path, &written));
    for (int i = 0; original && written && i < 2; i++) {
        const char *name = i ? "cls.seq_relationship.weight" : "bert.pooler.dense.bias";
        const fib_st_tensor *a = fib_st_find(original, name), *w = fib_st_find(written, name);
        CHECK(a && w && a->n_elements == w->n_elements &&
              memcmp(a->data, w->data, (size_t)a->n_elements * sizeof(float)) == 0);
    }
    fib_st_close(original);
    fib_st_close(written);
    fib_graph_free(b);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* The word and token-type embeddings are read in place from the mapping
 * (the graph owns no copy of them), and copied with copy = 1; both graphs
 * compute the same logits. */
static void bert_embeddings_read_in_place(void)
{
    char dir[400];
    make_dir(dir, sizeof dir, "in_place");
    write_bert(dir, "", NULL, false);
    fib_load_options copied;
    CHECK_OK(fib_load_options_init(&copied, sizeof copied));
    copied.copy = 1;
    fib_graph *mapped = NULL, *owned = NULL;
    CHECK_OK(fib_model_load(dir, NULL, &mapped));
    CHECK_OK(fib_model_load(dir, &copied, &owned));
    if (!mapped || !owned) {
        fib_graph_free(mapped);
        fib_graph_free(owned);
        return;
    }
    const char *tables[2] = {"bert.embeddings.word_embeddings",
                             "bert.embeddings.token_type_embeddings"};
    for (int i = 0; i < 2; i++) {
        int32_t id = group_named(mapped, tables[i]);
        const fib_dense *in_place = id >= 0 ? fib_group_matrix(mapped, id) : NULL;
        const fib_dense *copy = id >= 0 ? fib_group_matrix(owned, id) : NULL;
        CHECK(in_place && in_place->transposed && in_place->owned_weights == NULL);
        CHECK(copy && copy->owned_weights != NULL);
    }
    enum { BATCH = 2 };
    static float x[BATCH * (VOCAB + TYPES) * POSITIONS];
    static float a[BATCH * VOCAB * POSITIONS], b[BATCH * VOCAB * POSITIONS];
    one_hot_input(x, BATCH);
    CHECK_OK(fib_graph_forward(mapped, BATCH, FIB_DTYPE_F32, x, a));
    CHECK_OK(fib_graph_forward(owned, BATCH, FIB_DTYPE_F32, x, b));
    CHECK(memcmp(a, b, sizeof a) == 0);
    fib_graph_free(mapped);
    fib_graph_free(owned);
}

#ifdef FIB_TEST_WRAP_FINITE
/* The finiteness pass over stored values (the linker's --wrap sends the
 * library's calls here while `recording`): the byte ranges it read. The
 * tables here are far too small for the pass to run on several threads. */
enum { MAX_PASSES = 1024 };
static struct pass { uintptr_t begin, end; } passes[MAX_PASSES];
static int n_passes;
static bool recording;

bool __real_fib_all_finite_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                                  int64_t n);
bool __wrap_fib_all_finite_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                                  int64_t n);
bool __wrap_fib_all_finite_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                                  int64_t n)
{
    if (recording && n_passes < MAX_PASSES)
        passes[n_passes++] = (struct pass){(uintptr_t)x,
                                           (uintptr_t)x + (uintptr_t)n * fib_dtype_size(dtype)};
    return __real_fib_all_finite_stored(kernels, dtype, x, n);
}

static int by_begin(const void *a, const void *b)
{
    uintptr_t x = ((const struct pass *)a)->begin, y = ((const struct pass *)b)->begin;
    return (x > y) - (x < y);
}

/* The bytes fib_model_load checked for finiteness in the directory, each
 * checked once (no two passes overlap). */
static uint64_t bytes_checked_once(const char *dir)
{
    n_passes = 0;
    recording = true;
    fib_graph *g = NULL;
    CHECK_OK(fib_model_load(dir, NULL, &g));
    recording = false;
    fib_graph_free(g);
    CHECK(n_passes > 0 && n_passes < MAX_PASSES);
    qsort(passes, (size_t)n_passes, sizeof *passes, by_begin);
    uint64_t total = 0;
    for (int i = 0; i < n_passes; i++) {
        CHECK(i == 0 || passes[i].begin >= passes[i - 1].end);
        total += passes[i].end - passes[i].begin;
    }
    return total;
}

/* A tied decoder reads the word table the embedding has found finite: the
 * table is checked once (it was checked again for the decoder); an untied
 * decoder's own weight [vocab, hidden] is checked besides. */
static void bert_tied_decoder_checks_word_table_once(void)
{
    char tied[400], untied[400];
    make_dir(tied, sizeof tied, "tied_reads");
    make_dir(untied, sizeof untied, "untied_reads");
    write_bert(tied, "", NULL, false);
    write_bert(untied, ", \"tie_word_embeddings\": false", NULL, false);
    uint64_t tied_bytes = bytes_checked_once(tied), untied_bytes = bytes_checked_once(untied);
    CHECK(untied_bytes == tied_bytes + VOCAB * HIDDEN * sizeof(float));
}
#else
static void bert_tied_decoder_checks_word_table_once(void)
{
    printf("     (skipped: the linker has no --wrap)\n");
}
#endif

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-hf-bert-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(bert_planted_classes_found_and_merged);
    RUN(bert_refusals_name_what);
    RUN(bert_base_directory_gives_same_logits);
    RUN(bert_embeddings_read_in_place);
    RUN(bert_tied_decoder_checks_word_table_once);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_failures != 0;
}
