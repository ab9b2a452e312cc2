/* Hugging Face checkpoint directories read by fib_model_load, in C so that
 * the sanitizer and valgrind jobs run the reader (the Python tests compare
 * its models with reference decoders): a tiny llama directory with planted
 * MLP twins loads, colours the twins together and compresses; a directory
 * whose config asks for what is not supported, or that lacks a tensor, is
 * refused naming the key or the tensor, and nothing leaks on either path. */
#include "compress/compress.h"
#include "io/safetensors.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures;

enum { VOCAB = 11, HIDDEN = 8, INTER = 6, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 4 };

static char tmpdir[256];

static void write_config(const char *dir, const char *rope_scaling)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\",\n"
            " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": 1,\n"
            " \"num_attention_heads\": %d, \"num_key_value_heads\": %d,\n"
            " \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"vocab_size\": %d,\n"
            " \"tie_word_embeddings\": false, \"hidden_act\": \"silu\",\n"
            " \"attention_bias\": false, \"mlp_bias\": false, \"rope_scaling\": %s,\n"
            " \"max_position_embeddings\": 64, \"torch_dtype\": \"float32\"}\n",
            HIDDEN, INTER, HEADS, KV_HEADS, VOCAB, rope_scaling);
    fclose(f);
}

static uint64_t rng = 12345;

static float uniform(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static void fill(float *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = uniform();
}

/* Writes the directory; intermediate units 1 and 4 are twins (equal gate
 * and up rows, their down columns re-split 0.25 / 0.75), and, with
 * `drop` set, leaves that tensor out. */
static void write_llama(const char *dir, const char *rope_scaling, const char *drop)
{
    static float embed[VOCAB * HIDDEN], norm1[HIDDEN], norm2[HIDDEN], final_norm[HIDDEN];
    static float q[HEADS * HEAD_DIM * HIDDEN], k[KV_HEADS * HEAD_DIM * HIDDEN];
    static float v[KV_HEADS * HEAD_DIM * HIDDEN], o[HIDDEN * HEADS * HEAD_DIM];
    static float gate[INTER * HIDDEN], up[INTER * HIDDEN], down[HIDDEN * INTER];
    static float head[VOCAB * HIDDEN];
    float *all[] = {embed, q, k, v, o, gate, up, down, head};
    int64_t sizes[] = {VOCAB * HIDDEN, HEADS * HEAD_DIM * HIDDEN, KV_HEADS * HEAD_DIM * HIDDEN,
                       KV_HEADS * HEAD_DIM * HIDDEN, HIDDEN * HEADS * HEAD_DIM, INTER * HIDDEN,
                       INTER * HIDDEN, HIDDEN * INTER, VOCAB * HIDDEN};
    for (int a = 0; a < 9; a++)
        fill(all[a], sizes[a]);
    for (int i = 0; i < HIDDEN; i++) {
        norm1[i] = 1.0f + 0.5f * uniform();
        norm2[i] = 1.0f + 0.5f * uniform();
        final_norm[i] = 1.0f + 0.5f * uniform();
    }
    memcpy(gate + 4 * HIDDEN, gate + 1 * HIDDEN, HIDDEN * sizeof *gate);
    memcpy(up + 4 * HIDDEN, up + 1 * HIDDEN, HIDDEN * sizeof *up);
    for (int r = 0; r < HIDDEN; r++) {
        float total = down[r * INTER + 1];
        down[r * INTER + 1] = 0.25f * total;
        down[r * INTER + 4] = 0.75f * total;
    }
    fib_st_out t[] = {
        {"model.embed_tokens.weight", FIB_DTYPE_F32, 2, {VOCAB, HIDDEN}, embed},
        {"model.layers.0.input_layernorm.weight", FIB_DTYPE_F32, 1, {HIDDEN}, norm1},
        {"model.layers.0.self_attn.q_proj.weight", FIB_DTYPE_F32, 2, {HEADS * HEAD_DIM, HIDDEN}, q},
        {"model.layers.0.self_attn.k_proj.weight", FIB_DTYPE_F32, 2,
         {KV_HEADS * HEAD_DIM, HIDDEN}, k},
        {"model.layers.0.self_attn.v_proj.weight", FIB_DTYPE_F32, 2,
         {KV_HEADS * HEAD_DIM, HIDDEN}, v},
        {"model.layers.0.self_attn.o_proj.weight", FIB_DTYPE_F32, 2, {HIDDEN, HEADS * HEAD_DIM}, o},
        {"model.layers.0.post_attention_layernorm.weight", FIB_DTYPE_F32, 1, {HIDDEN}, norm2},
        {"model.layers.0.mlp.gate_proj.weight", FIB_DTYPE_F32, 2, {INTER, HIDDEN}, gate},
        {"model.layers.0.mlp.up_proj.weight", FIB_DTYPE_F32, 2, {INTER, HIDDEN}, up},
        {"model.layers.0.mlp.down_proj.weight", FIB_DTYPE_F32, 2, {HIDDEN, INTER}, down},
        {"model.norm.weight", FIB_DTYPE_F32, 1, {HIDDEN}, final_norm},
        {"lm_head.weight", FIB_DTYPE_F32, 2, {VOCAB, HIDDEN}, head},
    };
    fib_st_out kept[sizeof t / sizeof t[0]];
    int64_t n = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!drop || strcmp(t[i].name, drop) != 0)
            kept[n++] = t[i];
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(fib_st_write(path, kept, n, NULL, NULL, 0));
    write_config(dir, rope_scaling);
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

static void llama_twins_found_and_merged(void)
{
    char dir[400];
    make_dir(dir, sizeof dir, "llama");
    write_llama(dir, "null", NULL);
    fib_graph *g = NULL;
    CHECK_OK(fib_model_load(dir, NULL, &g));
    if (!g)
        return;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    const char *mlp[] = {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"};
    for (int m = 0; m < 2 && c; m++) {
        int32_t group = group_named(g, mlp[m]);
        CHECK(group >= 0);
        if (group < 0)
            continue;
        int64_t colors[INTER];
        CHECK_OK(fib_coloring_colors(c, group, colors, INTER));
        CHECK(colors[1] == colors[4]);
        for (int i = 0; i < INTER; i++)
            for (int j = i + 1; j < INTER; j++)
                if (!(i == 1 && j == 4))
                    CHECK(colors[i] != colors[j]);
    }
    if (c) {
        fib_base *base = NULL;
        CHECK_OK(fib_compress(g, c, &base));
        fib_base_free(base);
    }
    fib_coloring_free(c);
    fib_graph_free(g);
}

static void refused(const char *name, const char *rope_scaling, const char *drop,
                    const char *needle)
{
    char dir[400];
    make_dir(dir, sizeof dir, name);
    write_llama(dir, rope_scaling, drop);
    fib_graph *g = NULL;
    CHECK(fib_model_load(dir, NULL, &g) != FIB_OK);
    CHECK(g == NULL);
    CHECK(strstr(fib_last_error(), needle) != NULL);
    if (!strstr(fib_last_error(), needle))
        fprintf(stderr, "     message: %s\n", fib_last_error());
}

static void llama_refusals_name_what(void)
{
    refused("rope", "{\"type\": \"linear\", \"factor\": 2.0}", NULL, "rope_scaling");
    refused("missing", "null", "model.layers.0.mlp.up_proj.weight",
            "model.layers.0.mlp.up_proj.weight");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-hf-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(llama_twins_found_and_merged);
    RUN(llama_refusals_name_what);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_failures != 0;
}
