/* The base of a Hugging Face checkpoint directory written back in the
 * checkpoint's own layout (config.json and model.safetensors), where that
 * layout can hold it; else the library's own model file. What each layout
 * holds is docs/model-files.md, "Bases of checkpoint directories": keep
 * them in step.
 *
 * A llama-family, GPT-2 or BERT checkpoint describes every layer with the same
 * config.json numbers: one intermediate size, one hidden size, one number
 * of heads. A base fits when only the MLP's intermediate units were merged,
 * into the same number of classes in every layer. Merged residual
 * dimensions need norms that weight each base dimension by its class size,
 * merged head dimensions need pair multiplicities: neither has a place in
 * the checkpoint format, and a base must never be made larger to fit it
 * (padding back to a common width would undo the compression), so those
 * bases are written in the library's format, with the reason. */
#include "io/file_output.h"
#include "io/model_io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAME 512

/* One tensor of a base group, transposed (a [rows, cols] block written
 * [cols, rows]) when asked. */
typedef struct hf_piece {
    int32_t group;
    const char *tensor;
    bool transpose;
} hf_piece;

/* One tensor of the written file: base tensors side by side, or a tensor
 * of the original copied as stored. Its values are made when it is
 * written, so that one tensor's values are held at a time. */
typedef struct hf_tensor {
    hf_piece pieces[3];
    int32_t n_pieces;
    int64_t rows, cols;           /* in the written layout (a vector: one row) */
    const fib_st_tensor *copied;  /* or NULL */
} hf_tensor;

typedef struct hf_writer {
    const fib_graph *model, *base;
    const char *model_dir;
    int32_t n_groups;
    bool gpt2, bert;
    bool tied;
    const char *inner_key;  /* config key of the MLP width */
    int64_t inner;          /* the base's MLP width, -1 before the first layer */
    int64_t model_inner;
    char *reason;
    size_t reason_size;
    /* the tensors to write: out[i] (name, dtype, shape) made from plan[i] */
    int64_t n_out, cap_out;
    fib_st_out *out;
    hf_tensor *plan;
    /* the original's files (bert: its heads outside the graph are copied) */
    int64_t n_originals;
    fib_st_file **originals;
} hf_writer;

static void say(hf_writer *W, const char *format, ...)
{
    if (!W->reason || W->reason_size == 0)
        return;
    va_list ap;
    va_start(ap, format);
    vsnprintf(W->reason, W->reason_size, format, ap);
    va_end(ap);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static int64_t units_of(const fib_graph *g, int32_t group)
{
    int64_t n = 0;
    fib_graph_group_info(g, group, NULL, &n, NULL, NULL, NULL, NULL, NULL);
    return n;
}

/* ---- can the layout hold the base? --------------------------------------- */

/* Groups whose units the checkpoint layout lets merge: the MLP's
 * intermediate units (llama: gate, up and their product; gpt2: c_fc;
 * bert: intermediate.dense). */
static bool mergeable(const hf_writer *W, const char *name)
{
    if (W->gpt2)
        return ends_with(name, ".mlp.c_fc");
    if (W->bert)
        return ends_with(name, ".intermediate.dense");
    return ends_with(name, ".mlp.gate_proj") || ends_with(name, ".mlp.up_proj") ||
           ends_with(name, ".mlp.product");
}

static int32_t same_projection(const fib_base *base, int32_t a, int32_t b, int64_t n,
                               bool *same)
{
    int64_t *pa = fib_alloc(n, sizeof *pa), *pb = fib_alloc(n, sizeof *pb);
    int32_t st = pa && pb ? FIB_OK : fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    if (st == FIB_OK)
        st = fib_base_projection(base, a, pa, n);
    if (st == FIB_OK)
        st = fib_base_projection(base, b, pb, n);
    *same = st == FIB_OK && memcmp(pa, pb, (size_t)n * sizeof *pa) == 0;
    fib_free(pa);
    fib_free(pb);
    return st;
}

/* Whether a product group of g multiplies unit c of both factors for every
 * c (no gather). */
static int32_t reads_alike(const fib_graph *g, int32_t group, int64_t n, bool *alike)
{
    int64_t *a = fib_alloc(n > 0 ? n : 1, sizeof *a), *b = fib_alloc(n > 0 ? n : 1, sizeof *b);
    int32_t st = a && b ? fib_graph_read_sum(g, group, a, b)
                        : fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    *alike = st == FIB_OK;
    for (int64_t c = 0; c < n && *alike; c++)
        *alike = a[c] == c && b[c] == c;
    fib_free(a);
    fib_free(b);
    return st;
}

/* Whether the checkpoint layout holds the written graph (base: its
 * projection, or NULL for a lift); if not, W->reason says why. */
static int32_t layout_holds(hf_writer *W, const fib_base *base, bool *holds)
{
    *holds = false;
    W->inner = -1;
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->model, i);
        int64_t n = units_of(W->model, i), k = units_of(W->base, i);
        if (!mergeable(W, name)) {
            if (n != k) {
                say(W, "group '%s' was merged (%lld -> %lld units); the checkpoint layout "
                    "holds only merged MLP units", name, (long long)n, (long long)k);
                return FIB_OK;
            }
            continue;
        }
        if (W->inner >= 0 && k != W->inner) {
            say(W, "the MLP widths of the layers differ (%lld, then %lld in '%s'); "
                "config.json holds one '%s'", (long long)W->inner, (long long)k, name,
                W->inner_key);
            return FIB_OK;
        }
        W->inner = k;
        W->model_inner = n;
        if (!W->gpt2 && !W->bert && ends_with(name, ".mlp.product")) {
            /* gate, up and product alike: the product reads unit c of both */
            bool alike = false;
            int32_t st = reads_alike(W->base, i, k, &alike);
            if (st != FIB_OK)
                return st;
            if (!alike) {
                say(W, "the product '%s' gathers its factors; the checkpoint layout "
                    "multiplies gate unit c by up unit c", name);
                return FIB_OK;
            }
            for (int32_t s = 0; s < 2 && base; s++) {
                int32_t source = -1;
                bool same = false;
                int32_t st = fib_graph_group_source(W->model, i, s, &source);
                if (st == FIB_OK)
                    st = same_projection(base, i, source, n, &same);
                if (st != FIB_OK)
                    return st;
                if (!same) {
                    say(W, "the gate and up units of '%s' were merged differently; the "
                        "checkpoint layout multiplies gate unit c by up unit c", name);
                    return FIB_OK;
                }
            }
        }
    }
    *holds = true;
    return FIB_OK;
}

/* ---- tensors ------------------------------------------------------------- */

/* The index of a group's tensor called `tensor`, -1 if none; its
 * dimensions in *ndim and shape (unused ones 1). */
static int32_t tensor_index(const fib_graph *g, int32_t group, const char *tensor,
                            int32_t *ndim, int64_t shape[4])
{
    for (int32_t t = 0;; t++) {
        const char *name = NULL;
        if (fib_graph_tensor_info(g, group, t, ndim, shape, &name) != FIB_OK)
            return -1;
        if (strcmp(name, tensor) == 0)
            return t;
    }
}

/* The base group's tensor called `tensor`, read in place. */
static bool view_of(const fib_graph *g, int32_t group, const char *tensor, fib_tensor_view *v)
{
    const fib_group *grp = &g->groups[group];
    for (int32_t t = 0; grp->ops && grp->ops->tensor && grp->ops->tensor(g, group, t, v); t++)
        if (strcmp(v->name, tensor) == 0)
            return true;
    return false;
}

/* float -> float16 bits when the value is exactly a float16. */
static bool half_exact(float f, uint16_t *out)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t sign = (bits >> 16) & 0x8000u, mag = bits & 0x7fffffffu;
    uint16_t h;
    if (mag == 0) {
        h = 0;
    } else {
        int exponent = (int)(mag >> 23) - 127;
        if (exponent > 15 || exponent < -24)
            return false;
        if (exponent >= -14) {
            h = (uint16_t)(((uint32_t)(exponent + 15) << 10) | ((mag >> 13) & 0x3ffu));
        } else { /* subnormal half: the value is m * 2^-24 */
            uint32_t m = (mag & 0x7fffffu) | 0x800000u;
            int shift = -exponent - 14 + 13;
            h = (uint16_t)(m >> shift);
        }
    }
    h = (uint16_t)(h | sign);
    *out = h;
    return fib_half_to_float(h) == f;
}

/* Stores v as element i of buf in dtype if dtype holds it exactly (buf may
 * be NULL: only the check). */
static bool store_exact(int32_t dtype, void *buf, int64_t i, double v)
{
    if (dtype == FIB_DTYPE_F64) {
        if (buf)
            ((double *)buf)[i] = v;
        return true;
    }
    float f = (float)v;
    if ((double)f != v)
        return false;
    uint32_t bits;
    uint16_t h = 0;
    memcpy(&bits, &f, 4);
    if (dtype == FIB_DTYPE_BF16) {
        if ((bits & 0xffffu) != 0)
            return false;
        h = (uint16_t)(bits >> 16);
    } else if (dtype == FIB_DTYPE_F16 && !half_exact(f, &h)) {
        return false;
    }
    if (buf && dtype == FIB_DTYPE_F32)
        ((float *)buf)[i] = f;
    else if (buf)
        ((uint16_t *)buf)[i] = h;
    return true;
}

/* A piece's stored rows and columns (a vector: n x 1). */
static void piece_shape(const fib_tensor_view *v, int64_t *r, int64_t *c)
{
    *r = v->shape[0];
    *c = v->ndim == 1 ? 1 : v->shape[1];
}

static double piece_value(const fib_tensor_view *v, int64_t r, int64_t c)
{
    return fib_load(v->dtype, v->data, fib_view_at(v, r, c));
}

static int32_t push(hf_writer *W, const char *name, int32_t n_dims, const int64_t *shape,
                    int32_t dtype, const hf_tensor *t)
{
    if (W->n_out == W->cap_out) {
        int64_t cap = W->cap_out ? 2 * W->cap_out : 64;
        fib_st_out *out = fib_alloc(cap, sizeof *out);
        hf_tensor *plan = fib_alloc(cap, sizeof *plan);
        if (!out || !plan) {
            fib_free(out);
            fib_free(plan);
            return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
        }
        if (W->n_out) {
            memcpy(out, W->out, (size_t)W->n_out * sizeof *out);
            memcpy(plan, W->plan, (size_t)W->n_out * sizeof *plan);
        }
        fib_free(W->out);
        fib_free(W->plan);
        W->out = out;
        W->plan = plan;
        W->cap_out = cap;
    }
    char *copy = fib_alloc(strlen(name) + 1, 1);
    if (!copy)
        return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    strcpy(copy, name);
    fib_st_out *o = &W->out[W->n_out];
    memset(o, 0, sizeof *o);
    o->name = copy;
    o->dtype = dtype;
    o->n_dims = n_dims;
    for (int32_t d = 0; d < n_dims; d++)
        o->shape[d] = shape[d];
    W->plan[W->n_out++] = *t;
    return FIB_OK;
}

/* Plans the pieces side by side (GPT-2's fused c_attn is three groups'
 * weights) as the tensor `name`, in the model's dtype of those tensors
 * where it holds every value exactly, else float32 (float64 when float32
 * does not). Its values are made only when the file is written (produce). */
static int32_t emit(hf_writer *W, const char *name, const hf_piece *pieces, int32_t n_pieces)
{
    /* every piece has the same rows in the written layout; columns add up */
    int64_t rows = -1, cols = 0, shape[4];
    int32_t n_dims = 1, dtype = FIB_DTYPE_F32, ndim = 0;
    fib_tensor_view v[3];
    if (n_pieces < 1 || n_pieces > 3)
        return fib_error(FIB_E_INVALID, "fib_base_save_checkpoint: '%s': %d pieces", name,
                         (int)n_pieces);
    for (int32_t p = 0; p < n_pieces; p++) {
        if (!view_of(W->base, pieces[p].group, pieces[p].tensor, &v[p]))
            return fib_error(FIB_E_MISMATCH, "fib_base_save_checkpoint: group '%s' has no "
                             "tensor '%s'", fib_graph_group_name(W->base, pieces[p].group),
                             pieces[p].tensor);
        n_dims = v[p].ndim == 1 ? 1 : 2;
        int64_t r, c;
        piece_shape(&v[p], &r, &c);
        if (n_dims == 1) { /* a vector: one row in the written layout */
            c = r;
            r = 1;
        } else if (pieces[p].transpose) {
            int64_t x = r;
            r = c;
            c = x;
        }
        if (rows >= 0 && rows != r)
            return fib_error(FIB_E_MISMATCH, "fib_base_save_checkpoint: '%s': pieces of "
                             "different heights", name);
        rows = r;
        cols += c;
        int32_t mt = tensor_index(W->model, pieces[p].group, pieces[p].tensor, &ndim, shape);
        if (mt < 0 || fib_graph_tensor_dtype(W->model, pieces[p].group, mt, &dtype) != FIB_OK)
            dtype = FIB_DTYPE_F32;
    }
    /* the narrowest of the model's dtype, float32 and float64 that holds
     * every value: only pieces held in another dtype need looking at */
    bool in_model = true, in_f32 = true;
    for (int32_t p = 0; p < n_pieces; p++) {
        bool look_model = v[p].dtype != dtype, look_f32 = v[p].dtype == FIB_DTYPE_F64;
        int64_t r, c;
        piece_shape(&v[p], &r, &c);
        for (int64_t i = 0; i < r && ((look_model && in_model) || (look_f32 && in_f32)); i++)
            for (int64_t j = 0; j < c; j++) {
                double x = piece_value(&v[p], i, j);
                in_model = in_model && (!look_model || store_exact(dtype, NULL, 0, x));
                in_f32 = in_f32 && (!look_f32 || store_exact(FIB_DTYPE_F32, NULL, 0, x));
            }
    }
    if (!in_model)
        dtype = in_f32 ? FIB_DTYPE_F32 : FIB_DTYPE_F64;
    hf_tensor t = {{{0}}, n_pieces, rows, cols, NULL};
    for (int32_t p = 0; p < n_pieces; p++)
        t.pieces[p] = pieces[p];
    return n_dims == 1 ? push(W, name, 1, (int64_t[]){cols}, dtype, &t)
                       : push(W, name, 2, (int64_t[]){rows, cols}, dtype, &t);
}

/* Tensor i's values in its written dtype and layout. */
static int32_t produce(void *ctx, int64_t i, const void **data, void **owned)
{
    const hf_writer *W = ctx;
    const hf_tensor *t = &W->plan[i];
    const fib_st_out *o = &W->out[i];
    if (t->copied) {
        *data = t->copied->data;
        return FIB_OK;
    }
    fib_tensor_view v;
    /* one piece held as written: its bytes in place */
    if (t->n_pieces == 1 && !t->pieces[0].transpose &&
        view_of(W->base, t->pieces[0].group, t->pieces[0].tensor, &v) &&
        v.dtype == o->dtype && v.col_stride <= 1 &&
        (v.ndim == 1 ? v.row_stride == 1 : v.ndim == 2 && v.row_stride == v.shape[1])) {
        *data = v.data;
        return FIB_OK;
    }
    int64_t n = t->rows * t->cols;
    void *buf = fib_alloc(n > 0 ? n : 1, fib_dtype_size(o->dtype));
    if (!buf)
        return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory for '%s'",
                         o->name);
    int64_t at = 0;
    bool exact = true;
    for (int32_t p = 0; p < t->n_pieces; p++) {
        view_of(W->base, t->pieces[p].group, t->pieces[p].tensor, &v);
        int64_t r, c;
        piece_shape(&v, &r, &c);
        bool vector = v.ndim == 1, transpose = t->pieces[p].transpose && !vector;
        for (int64_t a = 0; a < r; a++)
            for (int64_t b = 0; b < c; b++) {
                /* written at row i, column at + j */
                int64_t wi = vector ? 0 : transpose ? b : a, wj = vector ? a : transpose ? a : b;
                exact &= store_exact(o->dtype, buf, wi * t->cols + at + wj,
                                     piece_value(&v, a, b));
            }
        at += vector ? r : transpose ? r : c;
    }
    *data = buf;
    *owned = buf;
    return exact ? FIB_OK : fib_error(FIB_E_MISMATCH, "fib_base_save_checkpoint: '%s' "
                                      "changed while it was written", o->name);
}

static int32_t emit_one(hf_writer *W, const char *name, int32_t group, const char *tensor,
                        bool transpose)
{
    hf_piece p = {group, tensor, transpose};
    return emit(W, name, &p, 1);
}

/* The tensors planned from `first` on in the widest of their dtypes: a
 * block's tensors share one dtype in a checkpoint (the reader refuses
 * mixed ones), and widening keeps every value. */
static void share_dtype(hf_writer *W, int64_t first)
{
    int32_t widest = W->out[first].dtype;
    for (int64_t i = first + 1; i < W->n_out; i++)
        if (fib_dtype_size(W->out[i].dtype) > fib_dtype_size(widest))
            widest = W->out[i].dtype;
    for (int64_t i = first; i < W->n_out; i++)
        W->out[i].dtype = widest;
}

/* A dense group as `<name>.weight` (and `.bias`), optionally transposed. */
static int32_t emit_dense(hf_writer *W, int32_t group, const char *name, bool transpose)
{
    char t[MAX_NAME];
    int64_t first = W->n_out;
    snprintf(t, sizeof t, "%s.weight", name);
    int32_t st = emit_one(W, t, group, "weight", transpose);
    int32_t has_bias = 0;
    fib_graph_group_info(W->base, group, NULL, NULL, NULL, NULL, &has_bias, NULL, NULL);
    if (st == FIB_OK && has_bias) {
        snprintf(t, sizeof t, "%s.bias", name);
        st = emit_one(W, t, group, "bias", false);
    }
    if (st == FIB_OK)
        share_dtype(W, first);
    return st;
}

/* A position shift group (learned position embeddings) as `<name>.weight`. */
static int32_t emit_position_shift(hf_writer *W, int32_t group, const char *name)
{
    char t[MAX_NAME];
    snprintf(t, sizeof t, "%s.weight", name);
    return emit_one(W, t, group, "shift", false);
}

/* A norm group with weight and bias as `<name>.weight` and `<name>.bias`. */
static int32_t emit_norm(hf_writer *W, int32_t group, const char *name)
{
    char t[MAX_NAME];
    int64_t first = W->n_out;
    snprintf(t, sizeof t, "%s.weight", name);
    int32_t st = emit_one(W, t, group, "weight", false);
    snprintf(t, sizeof t, "%s.bias", name);
    if (st == FIB_OK)
        st = emit_one(W, t, group, "bias", false);
    if (st == FIB_OK)
        share_dtype(W, first);
    return st;
}

/* The group names are the checkpoint's (model_hf.c): each group's tensors
 * go back under the names they were read from. */
static int32_t emit_llama(hf_writer *W)
{
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->base, i);
        int32_t op = 0, st = FIB_OK;
        fib_graph_group_info(W->base, i, &op, NULL, NULL, NULL, NULL, NULL, NULL);
        if (strcmp(name, "model.embed_tokens") == 0)
            st = emit_dense(W, i, name, true);
        else if (strcmp(name, "lm_head") == 0)
            st = W->tied ? FIB_OK : emit_dense(W, i, name, false);
        else if (ends_with(name, "layernorm.weight") || strcmp(name, "model.norm.weight") == 0)
            st = emit_one(W, name, i, "weight", false);
        else if (ends_with(name, "_proj"))
            st = emit_dense(W, i, name, false);
        if (st != FIB_OK)
            return st;
    }
    return FIB_OK;
}

static int32_t emit_gpt2(hf_writer *W)
{
    char t[MAX_NAME];
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->base, i);
        int32_t st = FIB_OK;
        if (ends_with(name, "wte")) {
            st = emit_dense(W, i, name, true);
        } else if (ends_with(name, "wpe")) {
            st = emit_position_shift(W, i, name);
        } else if (strcmp(name, "lm_head") == 0) {
            st = W->tied ? FIB_OK : emit_dense(W, i, name, false);
        } else if (ends_with(name, "ln_1") || ends_with(name, "ln_2") || ends_with(name, "ln_f")) {
            st = emit_norm(W, i, name);
        } else if (ends_with(name, ".attn.q")) {
            /* c_attn: q, k and v side by side in Conv1D layout [in, out] */
            size_t stem = strlen(name) - 2;
            hf_piece w[3], b[3];
            for (int32_t p = 0; p < 3; p++) {
                w[p] = (hf_piece){i + p, "weight", true};
                b[p] = (hf_piece){i + p, "bias", false};
            }
            int64_t first = W->n_out;
            snprintf(t, sizeof t, "%.*s.c_attn.weight", (int)stem, name);
            st = emit(W, t, w, 3);
            snprintf(t, sizeof t, "%.*s.c_attn.bias", (int)stem, name);
            if (st == FIB_OK)
                st = emit(W, t, b, 3);
            if (st == FIB_OK)
                share_dtype(W, first);
        } else if (ends_with(name, ".c_proj") || ends_with(name, ".c_fc")) {
            st = emit_dense(W, i, name, true);
        }
        if (st != FIB_OK)
            return st;
    }
    return FIB_OK;
}

/* BERT: each group under the name it was read from (model_hf.c); the MLM
 * head's decoder is tied to the word embeddings unless config.json says
 * not, and its bias is stored as cls.predictions.bias, as transformers
 * writes it. */
static int32_t emit_bert(hf_writer *W)
{
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->base, i);
        int32_t st = FIB_OK;
        if (ends_with(name, "embeddings.word_embeddings") ||
            ends_with(name, "embeddings.token_type_embeddings")) {
            st = emit_dense(W, i, name, true);
        } else if (ends_with(name, "embeddings.position_embeddings")) {
            st = emit_position_shift(W, i, name);
        } else if (ends_with(name, "LayerNorm")) {
            st = emit_norm(W, i, name);
        } else if (strcmp(name, "cls.predictions.decoder") == 0) {
            int64_t first = W->n_out;
            if (!W->tied)
                st = emit_one(W, "cls.predictions.decoder.weight", i, "weight", false);
            if (st == FIB_OK)
                st = emit_one(W, "cls.predictions.bias", i, "bias", false);
            if (st == FIB_OK)
                share_dtype(W, first);
        } else if (ends_with(name, ".dense") || ends_with(name, ".query") ||
                   ends_with(name, ".key") || ends_with(name, ".value")) {
            st = emit_dense(W, i, name, false);
        }
        if (st != FIB_OK)
            return st;
    }
    return FIB_OK;
}

/* The original's safetensors files, mapped: model.safetensors or the
 * shards its index lists (the reader has checked them). */
static int32_t open_originals(hf_writer *W)
{
    char path[4200];
    struct stat sb;
    fib_json *index = NULL;
    const fib_json *map = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", W->model_dir);
    bool single = stat(path, &sb) == 0;
    int32_t st = FIB_OK;
    if (!single) {
        char *text = NULL;
        size_t size = 0;
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", W->model_dir);
        st = fib_model_read_text(path, &text, &size);
        if (st == FIB_OK)
            st = fib_json_parse(text, size, path, &index);
        fib_free(text);
        map = st == FIB_OK ? fib_json_get(index, "weight_map") : NULL;
        if (st == FIB_OK && (!map || map->kind != FIB_JSON_OBJECT))
            st = fib_error(FIB_E_FORMAT, "%s: no 'weight_map' object", path);
    }
    int64_t n = single ? 1 : map ? map->n_items : 0;
    W->originals = st == FIB_OK ? fib_calloc(n > 0 ? n : 1, sizeof *W->originals) : NULL;
    if (st == FIB_OK && !W->originals)
        st = fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    for (int64_t i = 0; st == FIB_OK && i < n; i++) {
        const char *file = single ? "model.safetensors" : map->items[i].string;
        if (!file || strchr(file, '/')) {
            st = fib_error(FIB_E_FORMAT, "%s: weight_map['%s'] must be the name of a file "
                           "in the directory", path, map->items[i].key);
            break;
        }
        bool seen = false;
        for (int64_t f = 0; f < W->n_originals && !seen; f++) {
            const char *slash = strrchr(W->originals[f]->path, '/');
            seen = strcmp(slash ? slash + 1 : W->originals[f]->path, file) == 0;
        }
        if (seen)
            continue;
        snprintf(path, sizeof path, "%s/%s", W->model_dir, file);
        st = fib_st_open(path, &W->originals[W->n_originals]);
        if (st == FIB_OK)
            W->n_originals++;
    }
    fib_json_free(index);
    return st;
}

/* BERT's heads outside the graph (the pooler and the next-sentence head of
 * BertForPreTraining), copied from the original as stored: they read the
 * last hidden state, which a base in this layout computes unchanged, so the
 * base directory is whole for every model that held them. */
static int32_t copy_bert_heads(hf_writer *W)
{
    static const char *const heads[] = {"pooler.dense.weight", "pooler.dense.bias",
                                        "cls.seq_relationship.weight",
                                        "cls.seq_relationship.bias"};
    int32_t st = open_originals(W);
    for (int64_t f = 0; st == FIB_OK && f < W->n_originals; f++)
        for (int64_t k = 0; st == FIB_OK && k < W->originals[f]->n_tensors; k++) {
            const fib_st_tensor *t = &W->originals[f]->tensors[k];
            bool head = false;
            for (size_t h = 0; h < sizeof heads / sizeof *heads && !head; h++)
                head = strcmp(t->name, heads[h]) == 0 ||
                       (strncmp(t->name, "bert.", 5) == 0 && strcmp(t->name + 5, heads[h]) == 0);
            if (!head)
                continue;
            hf_tensor plan = {{{0}}, 0, 0, 0, t};
            st = push(W, t->name, t->n_dims, t->shape, t->dtype, &plan);
        }
    return st;
}

/* ---- the directory -------------------------------------------------------- */

/* config.json's text with `key` set to `value`: the original bytes
 * elsewhere, so that every other setting stays as it was written. */
static int32_t config_text(const char *text, size_t size, const fib_json *config,
                           const char *key, int64_t value, fib_jbuf *out)
{
    char number[32];
    snprintf(number, sizeof number, "%lld", (long long)value);
    const fib_json *v = fib_json_get(config, key);
    if (!v) { /* inserted as the first member */
        size_t open = config->offset + 1;
        fib_jbuf_bytes(out, text, open);
        fib_jbuf_raw(out, "\n  ");
        fib_jbuf_string(out, key);
        fib_jbuf_raw(out, ": ");
        fib_jbuf_raw(out, number);
        fib_jbuf_raw(out, config->n_items ? "," : "\n");
        fib_jbuf_bytes(out, text + open, size - open);
        return fib_jbuf_status(out);
    }
    if (v->kind != FIB_JSON_NUMBER && v->kind != FIB_JSON_NULL)
        return fib_error(FIB_E_FORMAT, "config.json: '%s' is not a number", key);
    size_t end = v->offset;
    while (end < size && strchr("0123456789+-.eEnul", text[end]))
        end++;
    fib_jbuf_bytes(out, text, v->offset);
    fib_jbuf_raw(out, number);
    fib_jbuf_bytes(out, text + end, size - end);
    return fib_jbuf_status(out);
}

static int32_t write_config(const char *path, const fib_jbuf *text)
{
    fib_output o;
    int32_t st = fib_output_open(&o, path);
    if (st != FIB_OK)
        return st;
    if (fwrite(text->data, 1, text->length, o.fp) != text->length) {
        int e = errno;
        fib_output_abort(&o);
        return fib_error(FIB_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return fib_output_commit(&o);
}

static void sync_folder_of(const char *path)
{
    char folder[4096];
    snprintf(folder, sizeof folder, "%s", path);
    char *slash = strrchr(folder, '/');
    if (slash == folder)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(folder, ".");
    int fd = open(folder, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* A new empty folder beside `path` (same file system, so the rename is
 * atomic), named after it. */
static int32_t make_temp_folder(const char *path, char *temp, size_t size)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    const char *leaf = slash ? slash + 1 : path;
    if (slash)
        slash[1] = '\0';
    else
        parent[0] = '\0';
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned long tag = (unsigned long)getpid() * 7919u + (unsigned long)time(NULL) +
                            (unsigned long)attempt * 104729u + (unsigned long)rand();
        if (snprintf(temp, size, "%s.%s.fibration-%lx", parent, leaf, tag) >= (int)size)
            return fib_error(FIB_E_INVALID, "%s: path too long", path);
        if (mkdir(temp, 0777) == 0)
            return FIB_OK;
        if (errno != EEXIST)
            return fib_error(FIB_E_IO, "%s: cannot create a folder beside it: %s", path,
                             strerror(errno));
    }
    return fib_error(FIB_E_IO, "%s: cannot create a temporary folder beside it", path);
}

static int32_t write_directory(hf_writer *W, const char *path, const fib_jbuf *config,
                               const char *projection)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return fib_error(FIB_E_IO, "%s: exists and is not a folder; not replaced", path);
    char temp[4200], file[4300];
    int32_t st = make_temp_folder(path, temp, sizeof temp);
    if (st != FIB_OK)
        return st;
    snprintf(file, sizeof file, "%s/config.json", temp);
    st = write_config(file, config);
    if (st == FIB_OK) {
        /* transformers reads "format" and ignores other keys */
        const char *keys[] = {"format", FIB_HF_PROJECTION_KEY}, *values[] = {"pt", projection};
        snprintf(file, sizeof file, "%s/model.safetensors", temp);
        st = fib_st_write_produced(file, W->out, W->n_out, keys, values, projection ? 2 : 1,
                                   produce, W);
    }
    if (st == FIB_OK && rename(temp, path) != 0) {
        int e = errno;
        st = e == ENOTEMPTY || e == EEXIST
                 ? fib_error(FIB_E_IO, "%s: exists and is not empty; not replaced", path)
                 : fib_error(FIB_E_IO, "%s: cannot rename the written folder to it: %s", path,
                             strerror(e));
    }
    if (st != FIB_OK) {
        snprintf(file, sizeof file, "%s/config.json", temp);
        remove(file);
        snprintf(file, sizeof file, "%s/model.safetensors", temp);
        remove(file);
        rmdir(temp);
        return st;
    }
    sync_folder_of(path);
    return FIB_OK;
}

static int32_t read_config(const char *dir, char **text, size_t *size, fib_json **config)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return fib_error(FIB_E_INVALID, "%s: path too long", dir);
    int32_t st = fib_model_read_text(path, text, size);
    if (st == FIB_OK)
        st = fib_json_parse(*text, *size, path, config);
    if (st == FIB_OK && (*config)->kind != FIB_JSON_OBJECT)
        st = fib_error(FIB_E_FORMAT, "%s: not a JSON object", path);
    return st;
}

static bool flag(const fib_json *config, const char *key, bool fallback)
{
    const fib_json *v = fib_json_get(config, key);
    return v && v->kind == FIB_JSON_BOOL ? v->boolean : fallback;
}

static void release(hf_writer *W)
{
    for (int64_t i = 0; i < W->n_out; i++)
        fib_free((void *)W->out[i].name);
    fib_free(W->out);
    fib_free(W->plan);
    for (int64_t f = 0; f < W->n_originals; f++)
        fib_st_close(W->originals[f]);
    fib_free(W->originals);
}

/* The projection of every group of the model onto the written base, as
 * the library's format stores it (one array per group): `fib_base_load`
 * reads it back from the directory, so that `fibration lift` expands it. */
static int32_t projection_text(const hf_writer *W, const fib_base *base, fib_jbuf *out)
{
    int64_t widest = 1;
    for (int32_t i = 0; i < W->n_groups; i++)
        widest = units_of(W->model, i) > widest ? units_of(W->model, i) : widest;
    int64_t *p = fib_alloc(widest, sizeof *p);
    if (!p)
        return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    int32_t st = FIB_OK;
    fib_jbuf_raw(out, "[");
    for (int32_t i = 0; i < W->n_groups && st == FIB_OK; i++) {
        int64_t n = units_of(W->model, i);
        st = fib_base_projection(base, i, p, n);
        fib_jbuf_raw(out, i ? ",[" : "[");
        for (int64_t u = 0; u < n && st == FIB_OK; u++) {
            if (u)
                fib_jbuf_raw(out, ",");
            fib_jbuf_int(out, p[u]);
        }
        fib_jbuf_raw(out, "]");
    }
    fib_jbuf_raw(out, "]");
    fib_free(p);
    return st == FIB_OK ? fib_jbuf_status(out) : st;
}

/* Writes `written` (a base's graph, or a lift's: the model's groups, with
 * other MLP widths) in the layout of the checkpoint model_dir when it can
 * hold it, else in the library's format (the base's, with its projection;
 * the graph's otherwise). */
static int32_t save_checkpoint(const fib_base *base, const fib_graph *written,
                               const fib_graph *model, const char *model_dir,
                               const char *path, int32_t dtype, int32_t *saved_as,
                               char *reason, size_t reason_size, const char *fn)
{
    hf_writer W = {0};
    W.model = model;
    W.base = written;
    W.model_dir = model_dir;
    W.reason = reason;
    W.reason_size = reason_size;
    if (reason && reason_size)
        reason[0] = '\0';
    int32_t n_base = 0;
    fib_graph_num_groups(model, &W.n_groups);
    fib_graph_num_groups(W.base, &n_base);
    bool matches = n_base == W.n_groups;
    for (int32_t i = 0; matches && i < W.n_groups; i++)
        matches = strcmp(fib_graph_group_name(model, i), fib_graph_group_name(W.base, i)) == 0;
    if (!matches)
        return fib_error(FIB_E_MISMATCH, "%s: the %s is not one of this model (groups "
                         "differ)", fn, base ? "base" : "graph");
    char *text = NULL;
    size_t size = 0;
    fib_json *config = NULL;
    int32_t st = read_config(model_dir, &text, &size, &config);
    bool holds = false;
    if (st == FIB_OK) {
        const fib_json *type = fib_json_get(config, "model_type");
        const char *t = type && type->kind == FIB_JSON_STRING ? type->string : "";
        W.gpt2 = strcmp(t, "gpt2") == 0;
        W.bert = strcmp(t, "bert") == 0;
        bool llama = strcmp(t, "llama") == 0 || strcmp(t, "mistral") == 0 ||
                     strcmp(t, "qwen2") == 0;
        W.inner_key = W.gpt2 ? "n_inner" : "intermediate_size";
        /* transformers' default: tied for gpt2 and bert, not for llama */
        W.tied = flag(config, "tie_word_embeddings", W.gpt2 || W.bert);
        if (ends_with(path, ".safetensors"))
            say(&W, "the output name ends in .safetensors");
        else if (!W.gpt2 && !W.bert && !llama)
            say(&W, "no checkpoint layout is written for model_type '%s'", t);
        else
            st = layout_holds(&W, base, &holds);
    }
    fib_jbuf json, projection;
    fib_jbuf_init(&json);
    fib_jbuf_init(&projection);
    if (st == FIB_OK && holds)
        st = W.gpt2 ? emit_gpt2(&W) : W.bert ? emit_bert(&W) : emit_llama(&W);
    if (st == FIB_OK && holds && W.bert)
        st = copy_bert_heads(&W);
    if (st == FIB_OK && holds) {
        if (W.inner != W.model_inner || W.inner < 0)
            st = config_text(text, size, config, W.inner_key, W.inner < 0 ? 0 : W.inner, &json);
        else
            fib_jbuf_bytes(&json, text, size), st = fib_jbuf_status(&json);
    }
    if (st == FIB_OK && holds && base)
        st = projection_text(&W, base, &projection);
    if (st == FIB_OK && holds)
        st = write_directory(&W, path, &json, base ? projection.data : NULL);
    if (st == FIB_OK && !holds)
        st = base ? fib_base_save(base, path, dtype) : fib_model_save(written, path, dtype);
    if (st == FIB_OK)
        *saved_as = holds ? FIB_SAVED_CHECKPOINT : FIB_SAVED_MODEL_FILE;
    fib_jbuf_free(&json);
    fib_jbuf_free(&projection);
    release(&W);
    fib_json_free(config);
    fib_free(text);
    return st;
}

int32_t fib_base_save_checkpoint(const fib_base *base, const fib_graph *model,
                                 const char *model_dir, const char *path, int32_t dtype,
                                 int32_t *saved_as, char *reason, size_t reason_size)
{
    static const char fn[] = "fib_base_save_checkpoint";
    if (!base || !model || !model_dir || !path || !saved_as)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    return save_checkpoint(base, fib_base_graph(base), model, model_dir, path, dtype,
                           saved_as, reason, reason_size, fn);
}

int32_t fib_graph_save_checkpoint(const fib_graph *graph, const fib_graph *model,
                                  const char *model_dir, const char *path, int32_t dtype,
                                  int32_t *saved_as, char *reason, size_t reason_size)
{
    static const char fn[] = "fib_graph_save_checkpoint";
    if (!graph || !model || !model_dir || !path || !saved_as)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    return save_checkpoint(NULL, graph, model, model_dir, path, dtype, saved_as, reason,
                           reason_size, fn);
}
