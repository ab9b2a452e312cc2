/* Model files: graph -> safetensors -> graph gives identical tensors and
 * identical colourings; bases keep their projection; the nn.Sequential
 * state-dict fallback; and the messages of files that cannot be read. */
#include "compress/compress.h"
#include "io/safetensors.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];

static void tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

/* 6 inputs -> 4 relu (rows 0 and 2 equal, so fibers merge them) -> 3 linear */
static double w1[4 * 6] = {
    0.5, -1.0, 0.25, 0.0, 2.0, -0.5,
    1.5, 0.5, -0.75, 1.0, 0.0, 0.25,
    0.5, -1.0, 0.25, 0.0, 2.0, -0.5,
    -1.0, 0.75, 0.5, -0.25, 1.0, 0.5,
};
static double b1[4] = {0.1, -0.2, 0.1, 0.3};
static double w2[3 * 4] = {
    1.0, 0.5, 1.0, -1.0,
    -0.5, 0.25, -0.5, 0.75,
    0.25, -1.0, 0.25, 0.5,
};
static double b2[3] = {0.0, 0.5, -0.5};

static fib_graph *planted_graph(void)
{
    fib_graph *g = NULL;
    int32_t in, h, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 6, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, w1, 6, b1, 0, &h));
    CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h, 3, FIB_DTYPE_F64, w2, 4, b2, 0, &out));
    CHECK_OK(fib_graph_set_group_name(g, in, "input"));
    CHECK_OK(fib_graph_set_group_name(g, h, "hidden"));
    CHECK_OK(fib_graph_set_group_name(g, out, "logits"));
    return g;
}

/* Same structure, same weights (converted to dtype), same colourings. */
static void check_same(const fib_graph *a, const fib_graph *b, int32_t dtype)
{
    int32_t na = -1, nb = -2;
    CHECK_OK(fib_graph_num_groups(a, &na));
    CHECK_OK(fib_graph_num_groups(b, &nb));
    CHECK(na == nb);
    if (na != nb)
        return;
    for (int32_t i = 0; i < na; i++) {
        int32_t opa, opb, acta, actb, hba, hbb, nsa, nsb, oa, ob;
        int64_t ua, ub;
        double pa, pb;
        CHECK_OK(fib_graph_group_info(a, i, &opa, &ua, &acta, &pa, &hba, &nsa, &oa));
        CHECK_OK(fib_graph_group_info(b, i, &opb, &ub, &actb, &pb, &hbb, &nsb, &ob));
        CHECK(opa == opb && ua == ub && acta == actb && pa == pb && hba == hbb &&
              nsa == nsb && oa == ob);
        CHECK(strcmp(fib_graph_group_name(a, i), fib_graph_group_name(b, i)) == 0);
        CHECK(a->groups[i].eps_override == b->groups[i].eps_override);
        for (int32_t s = 0; s < nsa && s < nsb; s++) {
            int32_t sa, sb;
            CHECK_OK(fib_graph_group_source(a, i, s, &sa));
            CHECK_OK(fib_graph_group_source(b, i, s, &sb));
            CHECK(sa == sb);
        }
        if (opa == FIB_OP_DENSE) {
            int32_t src;
            int64_t n_in;
            CHECK_OK(fib_graph_group_source(a, i, 0, &src));
            CHECK_OK(fib_graph_group_info(a, src, NULL, &n_in, NULL, NULL, NULL,
                                          NULL, NULL));
            size_t es = fib_dtype_size(dtype);
            size_t wbytes = (size_t)(ua * n_in) * es, bbytes = (size_t)ua * es;
            void *wa = calloc(1, wbytes), *wb = calloc(1, wbytes);
            void *ba = calloc(1, bbytes), *bb = calloc(1, bbytes);
            CHECK_OK(fib_graph_read_dense(a, i, dtype, wa, n_in, ba));
            CHECK_OK(fib_graph_read_dense(b, i, dtype, wb, n_in, bb));
            CHECK(memcmp(wa, wb, wbytes) == 0);
            CHECK(memcmp(ba, bb, bbytes) == 0);
            free(wa);
            free(wb);
            free(ba);
            free(bb);
        } else if (opa == FIB_OP_SUM) {
            int64_t *ia = calloc((size_t)ua, 8), *ib = calloc((size_t)ua, 8);
            int64_t *ja = calloc((size_t)ua, 8), *jb = calloc((size_t)ua, 8);
            CHECK_OK(fib_graph_read_sum(a, i, ia, ja));
            CHECK_OK(fib_graph_read_sum(b, i, ib, jb));
            CHECK(memcmp(ia, ib, (size_t)ua * 8) == 0);
            CHECK(memcmp(ja, jb, (size_t)ua * 8) == 0);
            free(ia);
            free(ib);
            free(ja);
            free(jb);
        }
    }
    for (int32_t sym = FIB_SYM_FIBERS; sym <= FIB_SYM_COVERS; sym++) {
        fib_color_options o;
        fib_color_options_init(&o, sizeof o);
        o.symmetry = sym;
        fib_coloring *ca = NULL, *cb = NULL;
        CHECK_OK(fib_color(a, &o, &ca));
        CHECK_OK(fib_color(b, &o, &cb));
        for (int32_t i = 0; ca && cb && i < na; i++) {
            CHECK(ca->parts[i].n_classes == cb->parts[i].n_classes);
            CHECK(memcmp(ca->parts[i].color, cb->parts[i].color,
                         (size_t)ca->parts[i].n_units * 8) == 0);
        }
        fib_coloring_free(ca);
        fib_coloring_free(cb);
    }
}

static void test_round_trip(void)
{
    fib_graph *g = planted_graph();
    char path[400];
    tmp_path(path, sizeof path, "planted.safetensors");
    static const int32_t dtypes[] = {0, FIB_DTYPE_F64, FIB_DTYPE_F32};
    for (int k = 0; k < 3; k++) {
        CHECK_OK(fib_model_save(g, path, dtypes[k]));
        for (int32_t copy = 0; copy <= 1; copy++) {
            fib_load_options lo;
            CHECK_OK(fib_load_options_init(&lo, sizeof lo));
            lo.copy = copy;
            fib_graph *h = NULL;
            CHECK_OK(fib_model_load(path, &lo, &h));
            if (!h)
                continue;
            check_same(g, h, dtypes[k] == FIB_DTYPE_F32 ? FIB_DTYPE_F32
                                                        : FIB_DTYPE_F64);
            CHECK(h->n_resources == (copy ? 0 : 1));
            fib_graph_free(h);
        }
    }
    /* tensors are named after the groups */
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_open(path, &f));
    CHECK(f && fib_st_find(f, "hidden.weight") && fib_st_find(f, "logits.bias"));
    CHECK(f && fib_st_meta(f, "fibration") != NULL);
    fib_st_close(f);
    unlink(path);
    fib_graph_free(g);
}

/* Unnamed groups, a residual sum, leaky ReLU, per-group eps. */
static void test_round_trip_sum(void)
{
    static const double wa[4 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    static const double wb[2 * 4] = {1, 2, 3, 4, -1, -2, -3, -4};
    fib_graph *g = NULL;
    int32_t in, a, s, o;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, wa, 4, NULL, 0, &a));
    CHECK_OK(fib_graph_set_activation(g, a, FIB_ACT_LEAKY_RELU, 0.2));
    CHECK_OK(fib_graph_set_group_eps(g, a, 0.125));
    CHECK_OK(fib_graph_add_sum(g, in, a, &s));
    CHECK_OK(fib_graph_set_activation(g, s, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_dense(g, s, 2, FIB_DTYPE_F64, wb, 4, NULL, 0, &o));
    char path[400];
    tmp_path(path, sizeof path, "sum.safetensors");
    CHECK_OK(fib_model_save(g, path, 0));
    fib_graph *h = NULL;
    CHECK_OK(fib_model_load(path, NULL, &h));
    if (h)
        check_same(g, h, FIB_DTYPE_F64);
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_open(path, &f));
    CHECK(f && fib_st_find(f, "groups.1.weight") && fib_st_find(f, "groups.3.weight"));
    fib_st_close(f);
    fib_graph_free(h);
    fib_graph_free(g);
    unlink(path);
}

static void test_base_round_trip(void)
{
    fib_graph *g = planted_graph();
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    fib_base *base = NULL;
    CHECK_OK(fib_compress(g, c, &base));
    if (!base) {
        fib_coloring_free(c);
        fib_graph_free(g);
        return;
    }
    CHECK(base->graph->groups[1].n_units == 3); /* rows 0 and 2 merged */
    char path[400];
    tmp_path(path, sizeof path, "base.safetensors");
    CHECK_OK(fib_base_save(base, path, 0));
    fib_base *loaded = NULL;
    CHECK_OK(fib_base_load(path, NULL, &loaded));
    if (loaded) {
        check_same(base->graph, loaded->graph, FIB_DTYPE_F64);
        CHECK(loaded->n_groups == base->n_groups);
        for (int32_t i = 0; i < base->n_groups; i++) {
            int64_t pa[8], pb[8];
            CHECK_OK(fib_base_projection(base, i, pa, 8));
            CHECK_OK(fib_base_projection(loaded, i, pb, 8));
            CHECK(memcmp(pa, pb, (size_t)base->projection[i].n_units * 8) == 0);
        }
        fib_graph *la = NULL, *lb = NULL;
        CHECK_OK(fib_lift(base, NULL, &la));
        CHECK_OK(fib_lift(loaded, NULL, &lb));
        if (la && lb)
            check_same(la, lb, FIB_DTYPE_F64);
        fib_graph_free(la);
        fib_graph_free(lb);
    }
    fib_base_free(loaded);
    /* a base file also loads as a plain model */
    fib_graph *plain = NULL;
    CHECK_OK(fib_model_load(path, NULL, &plain));
    fib_graph_free(plain);
    /* a plain model is not a base */
    char model[400];
    tmp_path(model, sizeof model, "plain.safetensors");
    CHECK_OK(fib_model_save(g, model, 0));
    CHECK(fib_base_load(model, NULL, &loaded) == FIB_E_FORMAT);
    CHECK(strstr(fib_last_error(), "no projection") != NULL);
    unlink(model);
    unlink(path);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(g);
}

static void write_state_dict(const char *path, const fib_st_out *t, int64_t n)
{
    CHECK_OK(fib_st_write(path, t, n, NULL, NULL, 0));
}

static void test_state_dict(void)
{
    float w0[4 * 6], bias0[4], w2f[3 * 4], bias2[3];
    for (int i = 0; i < 24; i++)
        w0[i] = (float)w1[i];
    for (int i = 0; i < 4; i++)
        bias0[i] = (float)b1[i];
    for (int i = 0; i < 12; i++)
        w2f[i] = (float)w2[i];
    for (int i = 0; i < 3; i++)
        bias2[i] = (float)b2[i];
    fib_st_out t[4] = {
        {"2.weight", FIB_DTYPE_F32, 2, {3, 4}, w2f},
        {"0.weight", FIB_DTYPE_F32, 2, {4, 6}, w0},
        {"0.bias", FIB_DTYPE_F32, 1, {4}, bias0},
        {"2.bias", FIB_DTYPE_F32, 1, {3}, bias2},
    };
    char path[400];
    tmp_path(path, sizeof path, "sd.safetensors");
    write_state_dict(path, t, 4);
    fib_load_options lo;
    fib_load_options_init(&lo, sizeof lo);
    lo.activation = FIB_ACT_LEAKY_RELU;
    lo.parameter = 0.05;
    fib_graph *g = NULL;
    CHECK_OK(fib_model_load(path, &lo, &g));
    if (g) {
        int32_t n, act;
        double par;
        int64_t units;
        CHECK_OK(fib_graph_num_groups(g, &n));
        CHECK(n == 3);
        CHECK(strcmp(fib_graph_group_name(g, 0), "input") == 0);
        CHECK(strcmp(fib_graph_group_name(g, 1), "0") == 0);
        CHECK(strcmp(fib_graph_group_name(g, 2), "2") == 0);
        CHECK_OK(fib_graph_group_info(g, 1, NULL, &units, &act, &par, NULL, NULL,
                                      NULL));
        CHECK(units == 4 && act == FIB_ACT_LEAKY_RELU && par == 0.05);
        CHECK_OK(fib_graph_group_info(g, 2, NULL, &units, &act, NULL, NULL, NULL,
                                      NULL));
        CHECK(units == 3 && act == FIB_ACT_LINEAR);
        fib_coloring *c = NULL;
        CHECK_OK(fib_color(g, NULL, &c));
        int64_t k = 0;
        CHECK_OK(fib_coloring_num_classes(c, 1, &k));
        CHECK(k == 3);
        fib_coloring_free(c);
        /* the tensors are held as they were stored (compress writes a base
         * in this dtype by default) */
        int32_t dtype = 0;
        CHECK_OK(fib_graph_tensor_dtype(g, 1, 0, &dtype));
        CHECK(dtype == FIB_DTYPE_F32);
        CHECK(fib_graph_tensor_dtype(g, 1, 2, &dtype) == FIB_E_RANGE);
        CHECK(fib_graph_tensor_dtype(g, 0, 0, &dtype) == FIB_E_RANGE);
        CHECK(fib_graph_tensor_dtype(g, 1, 0, NULL) == FIB_E_NULL);
        fib_graph *planted = planted_graph();
        CHECK_OK(fib_graph_tensor_dtype(planted, 1, 1, &dtype));
        CHECK(dtype == FIB_DTYPE_F64);
        fib_graph_free(planted);
        /* saving keeps the state-dict names */
        char again[400];
        tmp_path(again, sizeof again, "sd2.safetensors");
        CHECK_OK(fib_model_save(g, again, 0));
        fib_st_file *f = NULL;
        CHECK_OK(fib_st_open(again, &f));
        CHECK(f && fib_st_find(f, "0.weight") && fib_st_find(f, "2.bias"));
        CHECK(f && fib_st_find(f, "0.weight")->file_dtype == FIB_ST_F32);
        fib_st_close(f);
        unlink(again);
    }
    fib_graph_free(g);
    unlink(path);
}

typedef struct sd_case {
    const char *name;
    fib_st_out tensors[3];
    int64_t n;
    const char *message;
} sd_case;

/* bfloat16 of a float that has one (its top half). */
static uint16_t bf16_of(double v)
{
    float f = (float)v;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return (uint16_t)(bits >> 16);
}

/* A bfloat16 state dict (written by hand: the writer makes F32 and F64)
 * loads with its tensors held as bfloat16, in place or copied; saved with
 * dtype 0 it becomes float32 holding the same values, packed and strided
 * tensors alike, and loads back to the same classes. */
static void test_bfloat16_model_held_and_saved(void)
{
    uint16_t w[24 + 12];
    for (int i = 0; i < 24; i++)
        w[i] = bf16_of(w1[i]); /* every w1, w2 value is a bfloat16 */
    for (int i = 0; i < 12; i++)
        w[24 + i] = bf16_of(w2[i]);
    char header[256];
    snprintf(header, sizeof header,
             "{\"0.weight\":{\"dtype\":\"BF16\",\"shape\":[4,6],\"data_offsets\":[0,48]},"
             "\"2.weight\":{\"dtype\":\"BF16\",\"shape\":[3,4],\"data_offsets\":[48,72]}}");
    while (strlen(header) % 8)
        strcat(header, " ");
    char path[400], saved[400];
    tmp_path(path, sizeof path, "bf16.safetensors");
    tmp_path(saved, sizeof saved, "bf16_saved.safetensors");
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp)
        return;
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, fp);
    fwrite(header, 1, n, fp);
    for (int i = 0; i < 36; i++) {
        unsigned char b[2] = {(unsigned char)(w[i] & 0xFF), (unsigned char)(w[i] >> 8)};
        fwrite(b, 1, 2, fp);
    }
    fclose(fp);
    for (int32_t copy = 0; copy <= 1; copy++) {
        fib_load_options o;
        fib_load_options_init(&o, sizeof o);
        o.copy = copy;
        fib_graph *g = NULL;
        CHECK_OK(fib_model_load(path, &o, &g));
        if (!g)
            continue;
        int32_t dtype = 0;
        CHECK_OK(fib_graph_tensor_dtype(g, 1, 0, &dtype));
        CHECK(dtype == FIB_DTYPE_BF16);
        double got[24];
        CHECK_OK(fib_graph_read_tensor(g, 1, 0, FIB_DTYPE_F64, got, 24));
        CHECK(!memcmp(got, w1, sizeof got));
        fib_coloring *c = NULL;
        CHECK_OK(fib_color(g, NULL, &c));
        int64_t k = 0;
        CHECK_OK(fib_coloring_num_classes(c, 1, &k));
        CHECK(k == 3);
        fib_coloring_free(c);
        CHECK_OK(fib_model_save(g, saved, 0));
        fib_st_file *f = NULL;
        CHECK_OK(fib_st_open(saved, &f));
        const fib_st_tensor *t = f ? fib_st_find(f, "0.weight") : NULL;
        CHECK(t && t->file_dtype == FIB_ST_F32);
        for (int i = 0; t && i < 24; i++)
            CHECK(((const float *)t->data)[i] == (float)w1[i]);
        fib_st_close(f);
        fib_graph *back = NULL;
        CHECK_OK(fib_model_load(saved, NULL, &back));
        if (back)
            check_same(g, back, FIB_DTYPE_F32);
        fib_graph_free(back);
        fib_graph_free(g);
    }
    /* a strided bfloat16 block (ld 8) saves the same values as float64 */
    uint16_t strided[4 * 8] = {0};
    for (int r = 0; r < 4; r++)
        memcpy(strided + r * 8, w + r * 6, 6 * sizeof *strided);
    fib_graph *g = NULL;
    int32_t in, h;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 6, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_BF16, strided, 8, NULL, 0, &h));
    CHECK_OK(fib_model_save(g, saved, FIB_DTYPE_F64));
    fib_graph *back = NULL;
    CHECK_OK(fib_model_load(saved, NULL, &back));
    double got[24] = {0};
    CHECK(back && fib_graph_read_tensor(back, 1, 0, FIB_DTYPE_F64, got, 24) == FIB_OK);
    CHECK(!memcmp(got, w1, sizeof got));
    fib_graph_free(back);
    fib_graph_free(g);
    unlink(path);
    unlink(saved);
}

static void test_state_dict_errors(void)
{
    static float z[64];
    const sd_case cases[] = {
        {"other names", {{"encoder.weight", FIB_DTYPE_F32, 2, {2, 2}, z}}, 1,
         "tensor 'encoder.weight' is not part of an nn.Sequential state dict"},
        {"conv", {{"0.weight", FIB_DTYPE_F32, 4, {2, 1, 3, 3}, z}}, 1,
         "only Linear layers"},
        {"chain", {{"0.weight", FIB_DTYPE_F32, 2, {3, 2}, z},
                   {"1.weight", FIB_DTYPE_F32, 2, {2, 4}, z}}, 2,
         "tensor '1.weight' takes 4 inputs but the layer before it ('0.weight') "
         "gives 3 outputs"},
        {"bias only", {{"0.weight", FIB_DTYPE_F32, 2, {3, 2}, z},
                       {"1.bias", FIB_DTYPE_F32, 1, {3}, z}}, 2,
         "has '1.bias' but no '1.weight'"},
        {"bias shape", {{"0.weight", FIB_DTYPE_F32, 2, {3, 2}, z},
                        {"0.bias", FIB_DTYPE_F32, 1, {2}, z}}, 2,
         "bias tensor '0.bias' has shape [2], expected [3]"},
        {"empty", {{NULL, 0, 0, {0}, NULL}}, 0, "holds no tensors"},
    };
    char path[400];
    tmp_path(path, sizeof path, "bad_sd.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_state_dict(path, cases[i].tensors, cases[i].n);
        fib_graph *g = NULL;
        CHECK(fib_model_load(path, NULL, &g) == FIB_E_FORMAT);
        CHECK(g == NULL);
        if (!strstr(fib_last_error(), cases[i].message) ||
            strncmp(fib_last_error(), path, strlen(path)) != 0) {
            test_failures++;
            fprintf(stderr, "%s: message '%s' lacks '%s'\n", cases[i].name,
                    fib_last_error(), cases[i].message);
        }
    }
    unlink(path);
}

typedef struct meta_case {
    const char *name;
    const char *meta;
    int32_t status;
    const char *message;
} meta_case;

#define META_HEAD "{\"format\":\"fibration-model\",\"version\":1,\"groups\":["
#define IN6 "{\"op\":\"input\",\"units\":6}"

static void test_metadata_errors(void)
{
    static const meta_case cases[] = {
        {"newer", "{\"format\":\"fibration-model\",\"version\":3,\"groups\":[" IN6 "]}",
         FIB_E_UNSUPPORTED, "version 3 is newer"},
        {"format", "{\"format\":\"x\",\"version\":1,\"groups\":[" IN6 "]}",
         FIB_E_FORMAT, "'format' is not"},
        {"json", "{\"format\":", FIB_E_FORMAT, "__metadata__ 'fibration': unexpected end"},
        {"no groups", "{\"format\":\"fibration-model\",\"version\":1}", FIB_E_FORMAT,
         "'groups' must be a non-empty array"},
        {"first not input", META_HEAD "{\"op\":\"sum\",\"units\":6}]}", FIB_E_FORMAT,
         "group 0: the first group must be an input"},
        {"missing tensor", META_HEAD IN6 ",{\"op\":\"dense\",\"units\":4,\"source\":0,"
         "\"weight\":\"nope\"}]}", FIB_E_FORMAT, "weight tensor 'nope' is not in the file"},
        {"shape", META_HEAD IN6 ",{\"op\":\"dense\",\"units\":3,\"source\":0,"
         "\"weight\":\"w\"}]}", FIB_E_FORMAT, "has shape [4, 6], expected [3, 6]"},
        {"source", META_HEAD IN6 ",{\"op\":\"dense\",\"units\":4,\"source\":1,"
         "\"weight\":\"w\"}]}", FIB_E_FORMAT, "'source' must be the index of an earlier"},
        {"op", META_HEAD IN6 ",{\"op\":\"conv\",\"units\":4}]}", FIB_E_FORMAT,
         "unknown op 'conv'"},
        {"activation", META_HEAD IN6 ",{\"op\":\"dense\",\"units\":4,\"source\":0,"
         "\"weight\":\"w\",\"activation\":\"swish\"}]}", FIB_E_FORMAT,
         "'activation' must be one of linear, relu, leaky_relu, tanh, sigmoid, gelu, silu, "
         "relu6, hardswish, hardsigmoid, mish, softplus, gelu_tanh"},
        {"units", META_HEAD "{\"op\":\"input\",\"units\":0}]}", FIB_E_FORMAT,
         "'units' must be an integer"},
        {"sum widths", META_HEAD IN6 ",{\"op\":\"dense\",\"units\":4,\"source\":0,"
         "\"weight\":\"w\"},{\"op\":\"sum\",\"units\":4,\"sources\":[0,1]}]}",
         FIB_E_FORMAT, "needs sources as wide as itself"},
        {"gather range", META_HEAD IN6 ",{\"op\":\"dense\",\"units\":4,\"source\":0,"
         "\"weight\":\"w\"},{\"op\":\"sum\",\"units\":2,\"sources\":[0,1],"
         "\"gather\":[[0,1],[0,4]]}]}", FIB_E_FORMAT, "'gather' index out of range"},
    };
    static float w[4 * 6];
    fib_st_out t = {"w", FIB_DTYPE_F32, 2, {4, 6}, w};
    const char *keys[] = {"fibration"};
    char path[400];
    tmp_path(path, sizeof path, "bad_meta.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *values[] = {cases[i].meta};
        CHECK_OK(fib_st_write(path, &t, 1, keys, values, 1));
        fib_graph *g = NULL;
        int32_t st = fib_model_load(path, NULL, &g);
        if (st != cases[i].status || !strstr(fib_last_error(), cases[i].message)) {
            test_failures++;
            fprintf(stderr, "%s: got %s '%s', wanted '%s'\n", cases[i].name,
                    fib_status_name(st), fib_last_error(), cases[i].message);
        }
        CHECK(g == NULL);
    }
    unlink(path);
}

static void test_nonfinite_and_args(void)
{
    float w[4] = {1, NAN, 0, 1};
    fib_st_out t = {"0.weight", FIB_DTYPE_F32, 2, {2, 2}, w};
    char path[400];
    tmp_path(path, sizeof path, "nan.safetensors");
    write_state_dict(path, &t, 1);
    fib_graph *g = NULL;
    CHECK(fib_model_load(path, NULL, &g) == FIB_E_NONFINITE);
    CHECK(strncmp(fib_last_error(), path, strlen(path)) == 0);
    unlink(path);
    CHECK(fib_model_load(NULL, NULL, &g) == FIB_E_NULL);
    CHECK(fib_model_load(path, NULL, NULL) == FIB_E_NULL);
    fib_load_options lo;
    CHECK(fib_load_options_init(&lo, sizeof lo - 1) == FIB_E_INVALID);
    CHECK(fib_load_options_init(NULL, sizeof lo) == FIB_E_NULL);
    fib_load_options_init(&lo, sizeof lo);
    lo.activation = 99;
    CHECK(fib_model_load(path, &lo, &g) == FIB_E_INVALID);
    fib_graph *p = planted_graph();
    CHECK(fib_model_save(p, path, 5) == FIB_E_INVALID);
    CHECK(fib_model_save(NULL, path, 0) == FIB_E_NULL);
    CHECK(fib_base_save(NULL, path, 0) == FIB_E_NULL);
    fib_graph_free(p);
    CHECK(g == NULL);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-model-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_round_trip);
    RUN(test_round_trip_sum);
    RUN(test_base_round_trip);
    RUN(test_state_dict);
    RUN(test_state_dict_errors);
    RUN(test_bfloat16_model_held_and_saved);
    RUN(test_metadata_errors);
    RUN(test_nonfinite_and_args);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
