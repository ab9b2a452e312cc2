/* Hugging Face checkpoint directories: config.json plus model.safetensors,
 * or shards listed by model.safetensors.index.json, read as stored (tensors
 * memory-mapped, half precision held natively). Model types "llama",
 * "mistral" and "qwen2" (one layout), "gpt2" and "bert". What is read and what is refused is
 * docs/model-files.md, "Hugging Face checkpoint directories": keep them in
 * step. */
#include "io/model_io.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Positions of the token input of a llama-family graph. Weights are shared
 * by all positions, so the colouring does not depend on the length beyond
 * the causal mask and the rotary frequencies, which a few positions already
 * expose. (gpt2's learned position embedding differs per position: its
 * graph spans all n_positions.) */
#define HF_POSITIONS 8
#define HF_MAX_SHARDS 4096

typedef struct hf_dir {
    const char *dir;
    char config_path[4096];
    int64_t n_files;
    fib_st_file **files;
    bool **used;            /* per file, per tensor: read by the model */
    fib_json *index;        /* model.safetensors.index.json, or NULL */
    const fib_json *weight_map;
    fib_graph *graph;
    bool copy;
} hf_dir;

bool fib_model_is_directory(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int32_t fib_model_read_text(const char *path, char **out, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fib_error(FIB_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = fib_alloc(cap, 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *grown = cap > (size_t)FIB_ST_MAX_HEADER ? NULL : fib_alloc(cap * 2, 1);
        if (grown)
            memcpy(grown, buf, n);
        fib_free(buf);
        buf = grown;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf)
        return fib_error(FIB_E_NOMEM, "%s: out of memory or too large", path);
    if (bad) {
        fib_free(buf);
        return fib_error(FIB_E_IO, "%s: read error", path);
    }
    *out = buf;
    *size = n;
    return FIB_OK;
}

static int32_t parse_file(const char *path, fib_json **out)
{
    char *text = NULL;
    size_t size = 0;
    int32_t st = fib_model_read_text(path, &text, &size);
    if (st != FIB_OK)
        return st;
    st = fib_json_parse(text, size, path, out);
    fib_free(text);
    if (st == FIB_OK && (*out)->kind != FIB_JSON_OBJECT) {
        fib_json_free(*out);
        return fib_error(FIB_E_FORMAT, "%s: not a JSON object", path);
    }
    return st;
}

static int32_t config_error(const hf_dir *H, const char *format, ...)
{
    char problem[600];
    va_list ap;
    va_start(ap, format);
    vsnprintf(problem, sizeof problem, format, ap);
    va_end(ap);
    return fib_error(FIB_E_FORMAT, "%s: %s", H->config_path, problem);
}

/* ---- config.json ---------------------------------------------------------- */

typedef struct hf_config {
    bool gpt2;              /* model_type gpt2, else llama-family */
    bool bert;              /* model_type bert (the encoder) */
    int64_t type_vocab;     /* bert: rows of the token-type embedding */
    bool qkv_bias;          /* qwen2: q, k and v have biases, o has none */
    int64_t hidden, intermediate, layers, heads, kv_heads, head_dim, vocab;
    int64_t positions;      /* of the graph (llama: at most HF_POSITIONS) */
    int64_t max_positions;  /* gpt2: rows of the position embedding */
    double eps, theta;
    bool tied, attention_bias, mlp_bias;
    int32_t activation;     /* of the MLP (gpt2) */
    double scale;           /* softmax scale; 0: 1 / sqrt(head_dim) */
} hf_config;

/* Keys read below, and keys that do not change the function computed
 * (token ids, bookkeeping, training-only settings; pretraining_tp splits the
 * same products into slices). Any other key is refused by name. */
static const char *const known_keys[] = {
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
    "rope_theta", "vocab_size", "tie_word_embeddings", "hidden_act",
    "attention_bias", "mlp_bias", "rope_scaling", "sliding_window",
    "max_position_embeddings",
    "architectures", "bos_token_id", "eos_token_id", "pad_token_id",
    "torch_dtype", "dtype", "transformers_version", "initializer_range",
    "use_cache", "attention_dropout", "pretraining_tp", "_name_or_path",
};

static bool present(const fib_json *v)
{
    return v && v->kind != FIB_JSON_NULL;
}

static int32_t get_count(const hf_dir *H, const fib_json *c, const char *key,
                         bool required, int64_t fallback, int64_t *out)
{
    const fib_json *v = fib_json_get(c, key);
    if (!present(v)) {
        if (required)
            return config_error(H, "key '%s' is missing", key);
        *out = fallback;
        return FIB_OK;
    }
    if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 1 ||
        v->integer > FIB_MAX_UNITS)
        return config_error(H, "key '%s' must be a positive integer", key);
    *out = v->integer;
    return FIB_OK;
}

static int32_t get_real(const hf_dir *H, const fib_json *c, const char *key,
                        double fallback, double *out)
{
    const fib_json *v = fib_json_get(c, key);
    *out = fallback;
    if (!present(v))
        return FIB_OK;
    if (v->kind != FIB_JSON_NUMBER || !isfinite(v->number) || v->number <= 0)
        return config_error(H, "key '%s' must be a positive number", key);
    *out = v->number;
    return FIB_OK;
}

static int32_t get_flag(const hf_dir *H, const fib_json *c, const char *key,
                        bool fallback, bool *out)
{
    const fib_json *v = fib_json_get(c, key);
    *out = fallback;
    if (!present(v))
        return FIB_OK;
    if (v->kind != FIB_JSON_BOOL)
        return config_error(H, "key '%s' must be true or false", key);
    *out = v->boolean;
    return FIB_OK;
}

static bool listed(const char *key, const char *const *keys, size_t n_keys)
{
    for (size_t j = 0; j < n_keys; j++)
        if (strcmp(key, keys[j]) == 0)
            return true;
    return false;
}

/* Every key of config.json is in keys or extra (n_extra may be 0). */
static int32_t check_keys(const hf_dir *H, const fib_json *c,
                          const char *const *keys, size_t n_keys,
                          const char *const *extra, size_t n_extra)
{
    for (int64_t i = 0; i < c->n_items; i++) {
        const char *key = c->items[i].key;
        if (!listed(key, keys, n_keys) && !listed(key, extra, n_extra))
            return config_error(H, "key '%s' is not supported (it may change "
                                "the computation; the keys read are listed in "
                                "docs/model-files.md)", key);
    }
    return FIB_OK;
}

/* Qwen2's window keys (the window only applies with use_sliding_window) and
 * use_mrope (multimodal rotary positions; only false is read). */
static const char *const qwen2_keys[] = {"use_sliding_window", "max_window_layers",
                                         "use_mrope"};

static int32_t read_llama(const hf_dir *H, const fib_json *c, hf_config *k,
                          bool qwen2)
{
    bool window_on = true;
    int32_t st = check_keys(H, c, known_keys, sizeof known_keys / sizeof *known_keys,
                            qwen2_keys, qwen2 ? 3 : 0);
    bool mrope = false;
    if (st || (qwen2 && ((st = get_flag(H, c, "use_sliding_window", false, &window_on)) ||
                         (st = get_flag(H, c, "use_mrope", false, &mrope)))))
        return st;
    if (mrope)
        return config_error(H, "key 'use_mrope' is not supported (only false)");
    k->qkv_bias = qwen2;
    if ((st = get_count(H, c, "hidden_size", true, 0, &k->hidden)) ||
        (st = get_count(H, c, "intermediate_size", true, 0, &k->intermediate)) ||
        (st = get_count(H, c, "num_hidden_layers", true, 0, &k->layers)) ||
        (st = get_count(H, c, "num_attention_heads", true, 0, &k->heads)) ||
        (st = get_count(H, c, "vocab_size", true, 0, &k->vocab)) ||
        (st = get_count(H, c, "num_key_value_heads", false, k->heads, &k->kv_heads)) ||
        (st = get_count(H, c, "max_position_embeddings", false, HF_POSITIONS,
                        &k->positions)) ||
        (st = get_real(H, c, "rms_norm_eps", 1e-6, &k->eps)) ||
        (st = get_real(H, c, "rope_theta", 10000.0, &k->theta)) ||
        (st = get_flag(H, c, "tie_word_embeddings", false, &k->tied)) ||
        (st = get_flag(H, c, "attention_bias", false, &k->attention_bias)) ||
        (st = get_flag(H, c, "mlp_bias", false, &k->mlp_bias)))
        return st;
    if (k->positions > HF_POSITIONS)
        k->positions = HF_POSITIONS;
    if (k->heads % k->kv_heads != 0)
        return config_error(H, "num_attention_heads %lld is not a multiple of "
                            "num_key_value_heads %lld", (long long)k->heads,
                            (long long)k->kv_heads);
    if (k->hidden % k->heads != 0 && !present(fib_json_get(c, "head_dim")))
        return config_error(H, "hidden_size %lld is not a multiple of "
                            "num_attention_heads %lld and no head_dim is given",
                            (long long)k->hidden, (long long)k->heads);
    if ((st = get_count(H, c, "head_dim", false, k->hidden / k->heads, &k->head_dim)))
        return st;
    if (k->head_dim % 2 != 0)
        return config_error(H, "head_dim %lld is odd; rotary embeddings turn "
                            "dimensions in pairs", (long long)k->head_dim);
    const fib_json *act = fib_json_get(c, "hidden_act");
    if (present(act) && (act->kind != FIB_JSON_STRING || strcmp(act->string, "silu") != 0))
        return config_error(H, "hidden_act %s%s%s is not supported (supported: "
                            "silu)", act->kind == FIB_JSON_STRING ? "'" : "",
                            act->kind == FIB_JSON_STRING ? act->string : "(not a string)",
                            act->kind == FIB_JSON_STRING ? "'" : "");
    if (present(fib_json_get(c, "rope_scaling")))
        return config_error(H, "key 'rope_scaling' is not supported (only null: "
                            "plain rotary embeddings with rope_theta)");
    const fib_json *window = fib_json_get(c, "sliding_window");
    if (window_on && present(window) &&
        (window->kind != FIB_JSON_NUMBER || !window->is_integer ||
         window->integer < k->positions))
        return config_error(H, "key 'sliding_window' is not supported below the "
                            "%lld analysed positions (only null or an integer >= "
                            "%lld)", (long long)k->positions, (long long)k->positions);
    return FIB_OK;
}

/* GPT-2: keys read, and keys that do not change the function (dropout
 * rates, the double-heads model's summary settings, bookkeeping;
 * reorder_and_upcast_attn only changes the rounding). */
static const char *const gpt2_keys[] = {
    "model_type", "n_embd", "n_head", "n_layer", "n_positions", "n_ctx",
    "n_inner", "vocab_size", "layer_norm_epsilon", "activation_function",
    "tie_word_embeddings", "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx", "add_cross_attention",
    "reorder_and_upcast_attn", "attn_pdrop", "embd_pdrop", "resid_pdrop",
    "summary_activation", "summary_first_dropout", "summary_proj_to_labels",
    "summary_type", "summary_use_proj", "task_specific_params",
    "architectures", "bos_token_id", "eos_token_id", "pad_token_id",
    "torch_dtype", "dtype", "transformers_version", "initializer_range",
    "use_cache", "_name_or_path",
};

/* transformers' activation names (ACT2FN) the library computes exactly:
 * "gelu" is the exact (erf) GELU, "gelu_new" and "gelu_pytorch_tanh" its
 * tanh approximation. */
#define HF_ACTIVATIONS "gelu_new, gelu_pytorch_tanh, gelu, relu, silu, swish, tanh, sigmoid"

static bool hf_activation(const char *name, int32_t *id)
{
    static const struct { const char *name; int32_t id; } acts[] = {
        {"gelu_new", FIB_ACT_GELU_TANH}, {"gelu_pytorch_tanh", FIB_ACT_GELU_TANH},
        {"gelu", FIB_ACT_GELU}, {"relu", FIB_ACT_RELU}, {"silu", FIB_ACT_SILU},
        {"swish", FIB_ACT_SILU}, {"tanh", FIB_ACT_TANH}, {"sigmoid", FIB_ACT_SIGMOID},
    };
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (strcmp(name, acts[i].name) == 0) {
            *id = acts[i].id;
            return true;
        }
    return false;
}

/* The activation named by `key` (`fallback` when absent), one of
 * HF_ACTIVATIONS. */
static int32_t get_activation(const hf_dir *H, const fib_json *c, const char *key,
                              const char *fallback, int32_t *out)
{
    const fib_json *act = fib_json_get(c, key);
    const char *name = present(act) && act->kind == FIB_JSON_STRING ? act->string
                       : present(act) ? "(not a string)" : fallback;
    if (hf_activation(name, out))
        return FIB_OK;
    return config_error(H, "%s '%s' is not supported (supported: %s)", key, name,
                        HF_ACTIVATIONS);
}

static int32_t read_gpt2(const hf_dir *H, const fib_json *c, hf_config *k)
{
    int32_t st = check_keys(H, c, gpt2_keys, sizeof gpt2_keys / sizeof *gpt2_keys,
                            NULL, 0);
    bool scaled = true, by_layer = false, cross = false;
    int64_t n_pos;
    k->gpt2 = true;
    if (st ||
        (st = get_count(H, c, "n_embd", true, 0, &k->hidden)) ||
        (st = get_count(H, c, "n_head", true, 0, &k->heads)) ||
        (st = get_count(H, c, "n_layer", true, 0, &k->layers)) ||
        (st = get_count(H, c, "vocab_size", true, 0, &k->vocab)) ||
        (st = get_count(H, c, "n_positions", true, 0, &n_pos)) ||
        (st = get_count(H, c, "n_inner", false, 4 * k->hidden, &k->intermediate)) ||
        (st = get_real(H, c, "layer_norm_epsilon", 1e-5, &k->eps)) ||
        (st = get_flag(H, c, "tie_word_embeddings", true, &k->tied)) ||
        (st = get_flag(H, c, "scale_attn_weights", true, &scaled)) ||
        (st = get_flag(H, c, "scale_attn_by_inverse_layer_idx", false, &by_layer)) ||
        (st = get_flag(H, c, "add_cross_attention", false, &cross)))
        return st;
    if (by_layer)
        return config_error(H, "key 'scale_attn_by_inverse_layer_idx' is not "
                            "supported (only false)");
    if (cross)
        return config_error(H, "key 'add_cross_attention' is not supported "
                            "(only false: a decoder without an encoder)");
    if (k->hidden % k->heads != 0)
        return config_error(H, "n_embd %lld is not a multiple of n_head %lld",
                            (long long)k->hidden, (long long)k->heads);
    k->kv_heads = k->heads;
    k->head_dim = k->hidden / k->heads;
    /* every row of the learned position embedding takes part: units equal
     * on the first rows only must not merge */
    k->positions = k->max_positions = n_pos;
    k->scale = scaled ? 0.0 : 1.0;
    k->attention_bias = k->mlp_bias = true;
    return get_activation(H, c, "activation_function", "gelu_new", &k->activation);
}

/* BERT (BertModel, and the models that hold it under "bert."): keys read,
 * and keys that do not change the encoder's function (dropout rates,
 * chunk_size_feed_forward, which only splits the MLP's positions into
 * chunks, the classifier's dropout, bookkeeping). */
static const char *const bert_keys[] = {
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
    "position_embedding_type", "is_decoder", "add_cross_attention",
    "pruned_heads", "chunk_size_feed_forward", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "classifier_dropout",
    "gradient_checkpointing", "tie_word_embeddings", "architectures", "bos_token_id",
    "eos_token_id", "pad_token_id", "torch_dtype", "dtype",
    "transformers_version", "initializer_range", "use_cache",
    "_name_or_path",
};

static int32_t read_bert(const hf_dir *H, const fib_json *c, hf_config *k)
{
    int32_t st = check_keys(H, c, bert_keys, sizeof bert_keys / sizeof *bert_keys,
                            NULL, 0);
    bool decoder = false, cross = false;
    k->bert = true;
    if (st ||
        (st = get_count(H, c, "hidden_size", true, 0, &k->hidden)) ||
        (st = get_count(H, c, "intermediate_size", true, 0, &k->intermediate)) ||
        (st = get_count(H, c, "num_hidden_layers", true, 0, &k->layers)) ||
        (st = get_count(H, c, "num_attention_heads", true, 0, &k->heads)) ||
        (st = get_count(H, c, "vocab_size", true, 0, &k->vocab)) ||
        (st = get_count(H, c, "max_position_embeddings", true, 0, &k->max_positions)) ||
        (st = get_count(H, c, "type_vocab_size", false, 2, &k->type_vocab)) ||
        (st = get_real(H, c, "layer_norm_eps", 1e-12, &k->eps)) ||
        (st = get_flag(H, c, "is_decoder", false, &decoder)) ||
        (st = get_flag(H, c, "add_cross_attention", false, &cross)) ||
        (st = get_flag(H, c, "tie_word_embeddings", true, &k->tied)))
        return st;
    if (decoder)
        return config_error(H, "key 'is_decoder' is not supported (only false: "
                            "the bidirectional encoder)");
    if (cross)
        return config_error(H, "key 'add_cross_attention' is not supported "
                            "(only false)");
    const fib_json *v = fib_json_get(c, "position_embedding_type");
    if (present(v) && (v->kind != FIB_JSON_STRING || strcmp(v->string, "absolute") != 0))
        return config_error(H, "key 'position_embedding_type' is not supported "
                            "(only \"absolute\": learned position embeddings)");
    v = fib_json_get(c, "pruned_heads");
    if (present(v) && (v->kind != FIB_JSON_OBJECT || v->n_items != 0))
        return config_error(H, "key 'pruned_heads' is not supported (only {}: "
                            "every layer keeps num_attention_heads heads)");
    if (k->hidden % k->heads != 0)
        return config_error(H, "hidden_size %lld is not a multiple of "
                            "num_attention_heads %lld", (long long)k->hidden,
                            (long long)k->heads);
    k->kv_heads = k->heads;
    k->head_dim = k->hidden / k->heads;
    /* every row of the position embedding takes part (as gpt2's) */
    k->positions = k->max_positions;
    k->attention_bias = k->mlp_bias = true;
    return get_activation(H, c, "hidden_act", "gelu", &k->activation);
}

static int32_t read_config(const hf_dir *H, const fib_json *c, hf_config *k)
{
    memset(k, 0, sizeof *k);
    const fib_json *type = fib_json_get(c, "model_type");
    if (!type || type->kind != FIB_JSON_STRING)
        return config_error(H, "key 'model_type' is missing (a Hugging Face "
                            "checkpoint names its architecture there)");
    if (strcmp(type->string, "llama") == 0 || strcmp(type->string, "mistral") == 0)
        return read_llama(H, c, k, false);
    if (strcmp(type->string, "qwen2") == 0)
        return read_llama(H, c, k, true);
    if (strcmp(type->string, "gpt2") == 0)
        return read_gpt2(H, c, k);
    if (strcmp(type->string, "bert") == 0)
        return read_bert(H, c, k);
    return config_error(H, "model_type '%s' is not supported (supported: "
                        "llama, mistral, qwen2, gpt2, bert)", type->string);
}

/* ---- the files -------------------------------------------------------------- */

static int32_t open_one(hf_dir *H, const char *name)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", H->dir, name) >= (int)sizeof path)
        return fib_error(FIB_E_INVALID, "%s: path too long", H->dir);
    fib_st_file *f = NULL;
    int32_t st = fib_st_open(path, &f);
    if (st != FIB_OK)
        return st;
    H->files[H->n_files] = f;
    H->used[H->n_files] = fib_calloc(f->n_tensors > 0 ? f->n_tensors : 1, sizeof(bool));
    H->n_files++;
    if (!H->used[H->n_files - 1])
        return fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    return FIB_OK;
}

/* The index's shard name of file i (its base name). */
static const char *base_name(const fib_st_file *f)
{
    const char *slash = strrchr(f->path, '/');
    return slash ? slash + 1 : f->path;
}

static int32_t open_files(hf_dir *H)
{
    char single[4096], index[4096];
    snprintf(single, sizeof single, "%s/model.safetensors", H->dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", H->dir);
    struct stat sb;
    bool has_single = stat(single, &sb) == 0, has_index = stat(index, &sb) == 0;
    if (has_single && has_index)
        return fib_error(FIB_E_FORMAT, "%s: holds both model.safetensors and "
                         "model.safetensors.index.json; which one is the model "
                         "is ambiguous", H->dir);
    if (!has_single && !has_index)
        return fib_error(FIB_E_FORMAT, "%s: no model.safetensors and no "
                         "model.safetensors.index.json", H->dir);
    H->files = fib_calloc(HF_MAX_SHARDS, sizeof *H->files);
    H->used = fib_calloc(HF_MAX_SHARDS, sizeof *H->used);
    if (!H->files || !H->used)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", H->dir);
    if (has_single)
        return open_one(H, "model.safetensors");
    int32_t st = parse_file(index, &H->index);
    if (st != FIB_OK)
        return st;
    H->weight_map = fib_json_get(H->index, "weight_map");
    if (!H->weight_map || H->weight_map->kind != FIB_JSON_OBJECT)
        return fib_error(FIB_E_FORMAT, "%s: no 'weight_map' object", index);
    for (int64_t i = 0; i < H->weight_map->n_items; i++) {
        const fib_json *v = &H->weight_map->items[i];
        if (v->kind != FIB_JSON_STRING || strchr(v->string, '/') ||
            strcmp(v->string, "..") == 0 || v->string[0] == '\0')
            return fib_error(FIB_E_FORMAT, "%s: weight_map['%s'] must be the "
                             "name of a file in the directory", index, v->key);
        bool seen = false;
        for (int64_t f = 0; f < H->n_files && !seen; f++)
            seen = strcmp(base_name(H->files[f]), v->string) == 0;
        if (seen)
            continue;
        if (H->n_files == HF_MAX_SHARDS)
            return fib_error(FIB_E_FORMAT, "%s: more than %d shards", index,
                             HF_MAX_SHARDS);
        if ((st = open_one(H, v->string)) != FIB_OK)
            return st;
    }
    /* every tensor of a shard is listed, under that shard */
    for (int64_t f = 0; f < H->n_files; f++)
        for (int64_t t = 0; t < H->files[f]->n_tensors; t++) {
            const char *name = H->files[f]->tensors[t].name;
            const fib_json *v = fib_json_get(H->weight_map, name);
            if (!v || strcmp(v->string, base_name(H->files[f])) != 0)
                return fib_error(FIB_E_FORMAT, "%s: tensor '%s' is not listed "
                                 "under this file in %s", H->files[f]->path,
                                 name, index);
        }
    return FIB_OK;
}

/* The tensor `name` with the given shape (n_dims 1 or 2), marked used. */
static int32_t tensor(hf_dir *H, const char *name, int32_t n_dims, int64_t d0,
                      int64_t d1, const fib_st_tensor **out, const char **path)
{
    for (int64_t f = 0; f < H->n_files; f++) {
        const fib_st_tensor *t = fib_st_find(H->files[f], name);
        if (!t)
            continue;
        char have[128];
        fib_model_shape_text(t->n_dims, t->shape, have, sizeof have);
        if (t->n_dims != n_dims || t->shape[0] != d0 || (n_dims == 2 && t->shape[1] != d1)) {
            if (n_dims == 1)
                return fib_error(FIB_E_FORMAT, "%s: tensor '%s' has shape %s, "
                                 "expected [%lld] (from config.json)",
                                 H->files[f]->path, name, have, (long long)d0);
            return fib_error(FIB_E_FORMAT, "%s: tensor '%s' has shape %s, "
                             "expected [%lld, %lld] (from config.json)",
                             H->files[f]->path, name, have, (long long)d0,
                             (long long)d1);
        }
        H->used[f][t - H->files[f]->tensors] = true;
        *out = t;
        *path = H->files[f]->path;
        return FIB_OK;
    }
    return fib_error(FIB_E_FORMAT, "%s: tensor '%s' is missing (expected by "
                     "config.json)", H->dir, name);
}

/* Whether any file stores a tensor called `name`. */
static bool stored(const hf_dir *H, const char *name)
{
    for (int64_t f = 0; f < H->n_files; f++)
        if (fib_st_find(H->files[f], name))
            return true;
    return false;
}

/* ---- the graph ---------------------------------------------------------------- */

static int32_t named(hf_dir *H, int32_t st, int32_t id, const char *name,
                     const char *path)
{
    if (st == FIB_OK)
        st = fib_graph_set_group_name(H->graph, id, name);
    if (st == FIB_OK)
        fib_model_block_added(H->graph, id);
    return st == FIB_OK ? FIB_OK : fib_model_rewrap(st, path, name);
}

static int32_t add_norm(hf_dir *H, const hf_config *k, int32_t source,
                        const char *name, int32_t *id)
{
    const fib_st_tensor *w;
    const char *path;
    int32_t st = tensor(H, name, 1, k->hidden, 0, &w, &path);
    if (st != FIB_OK)
        return st;
    st = fib_graph_add_norm(H->graph, source, FIB_NORM_RMS, w->dtype, w->data,
                            NULL, k->eps, H->copy ? FIB_COPY : 0u, id);
    return named(H, st, *id, name, path);
}

static int32_t add_dense(hf_dir *H, int32_t source, const char *prefix,
                         int64_t out, int64_t in, bool bias, int32_t *id)
{
    char wname[300], bname[300];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(bname, sizeof bname, "%s.bias", prefix);
    const fib_st_tensor *w, *b = NULL;
    const char *path, *bpath;
    int32_t st = tensor(H, wname, 2, out, in, &w, &path);
    if (st == FIB_OK && bias)
        st = tensor(H, bname, 1, out, 0, &b, &bpath);
    if (st != FIB_OK)
        return st;
    fib_model_loader L = {path, NULL, H->graph, H->copy, 0, NULL};
    st = fib_model_add_dense(&L, prefix, source, out, w, b, id);
    if (st != FIB_OK)
        return st;
    return named(H, FIB_OK, *id, prefix, path);
}

static int32_t add_attention(hf_dir *H, const hf_config *k, int32_t source,
                             const char *layer, int32_t *id)
{
    static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    int64_t q = k->heads * k->head_dim, kv = k->kv_heads * k->head_dim;
    const int64_t rows[4] = {q, kv, kv, k->hidden};
    const int64_t cols[4] = {k->hidden, k->hidden, k->hidden, q};
    const fib_st_tensor *t[8] = {NULL};
    const char *path = NULL, *p;
    char name[300];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.self_attn.%s.weight", layer, proj[i]);
        int32_t st = tensor(H, name, 2, rows[i], cols[i], &t[2 * i], &p);
        if (st == FIB_OK && (k->attention_bias || (k->qkv_bias && i < 3))) {
            snprintf(name, sizeof name, "%s.self_attn.%s.bias", layer, proj[i]);
            st = tensor(H, name, 1, rows[i], 0, &t[2 * i + 1], &p);
        }
        if (st != FIB_OK)
            return st;
        if (!path)
            path = p;
    }
    for (int i = 1; i < 8; i++)
        if (t[i] && t[i]->dtype != t[0]->dtype)
            return fib_error(FIB_E_FORMAT, "%s: tensor '%s' is %s but '%s' is "
                             "%s; the projections of one attention block must "
                             "share a dtype", H->dir, t[i]->name,
                             fib_st_dtype_name(t[i]->file_dtype), t[0]->name,
                             fib_st_dtype_name(t[0]->file_dtype));
    fib_attention_options o;
    fib_attention_options_init(&o, sizeof o);
    o.n_heads = k->heads;
    o.n_kv_heads = k->kv_heads;
    o.head_dim = k->head_dim;
    o.causal = 1;
    o.rotary = FIB_ROTARY_HALF;
    o.rope_theta = k->theta;
#define DATA(i) (t[i] ? t[i]->data : NULL)
    int32_t st = fib_graph_add_attention_ex(
        H->graph, source, &o, t[0]->dtype, DATA(0), DATA(1), DATA(2), DATA(3),
        DATA(4), DATA(5), DATA(6), DATA(7), H->copy ? FIB_COPY : 0u, id);
#undef DATA
    snprintf(name, sizeof name, "%s.self_attn", layer);
    if (st != FIB_OK)
        return fib_model_rewrap(st, path, name);
    static const char *const parts[5] = {"q_proj", "k_proj", "v_proj", "core", "o_proj"};
    for (int i = 0; i < 5 && st == FIB_OK; i++) {
        snprintf(name, sizeof name, "%s.self_attn.%s", layer, parts[i]);
        st = named(H, FIB_OK, *id - 4 + i, name, path);
    }
    return st;
}

static int32_t add_sum(hf_dir *H, int32_t a, int32_t b, const char *name,
                       int32_t *id)
{
    int32_t st = fib_graph_add_sum(H->graph, a, b, id);
    return named(H, st, *id, name, H->dir);
}

/* The matrix a tied head reads: the embedding's as the graph holds it.
 * When the graph copies its tensors that is the embedding group's own copy,
 * borrowed (*flags 0), so that the two groups keep one matrix, as the
 * mapped graph does: a budget counts a shared matrix once, as torch does
 * (compress/budget_graph.c). The copy is [vocab, hidden], the head's
 * layout. */
static const void *tied_matrix(const hf_dir *H, int32_t embedding, const fib_st_tensor *t,
                               int64_t hidden, uint32_t *flags)
{
    const fib_dense *d = H->copy ? fib_group_matrix(H->graph, embedding) : NULL;
    if (d && d->transposed && d->dtype == t->dtype && d->ld == hidden && d->owned_weights) {
        *flags = 0u;
        return d->weights;
    }
    *flags = H->copy ? FIB_COPY : 0u;
    return t->data;
}

static int32_t build_llama(hf_dir *H, const hf_config *k)
{
    int32_t x, st;
    st = fib_graph_add_input_positions(H->graph, k->vocab, k->positions, 1, &x);
    if ((st = named(H, st, x, "input_ids", H->dir)) != FIB_OK)
        return st;
    const fib_st_tensor *emb;
    const char *path;
    if ((st = tensor(H, "model.embed_tokens.weight", 2, k->vocab, k->hidden, &emb,
                     &path)) != FIB_OK)
        return st;
    int32_t h;
    fib_finite_values checked = {0};
    st = fib_token_embedding_add(H->graph, x, k->hidden, emb->dtype, emb->data,
                                 H->copy ? FIB_COPY : 0u, &checked, &h);
    if ((st = named(H, st, h, "model.embed_tokens", path)) != FIB_OK)
        return st;
    int32_t embedding = h;
    char layer[64], name[300];
    for (int64_t i = 0; i < k->layers; i++) {
        snprintf(layer, sizeof layer, "model.layers.%lld", (long long)i);
        int32_t n1, att, r1, n2, gate, up, prod, down, r2;
        snprintf(name, sizeof name, "%s.input_layernorm.weight", layer);
        if ((st = add_norm(H, k, h, name, &n1)) ||
            (st = add_attention(H, k, n1, layer, &att)))
            return st;
        snprintf(name, sizeof name, "%s.attention_residual", layer);
        if ((st = add_sum(H, h, att, name, &r1)))
            return st;
        snprintf(name, sizeof name, "%s.post_attention_layernorm.weight", layer);
        if ((st = add_norm(H, k, r1, name, &n2)))
            return st;
        snprintf(name, sizeof name, "%s.mlp.gate_proj", layer);
        if ((st = add_dense(H, n2, name, k->intermediate, k->hidden, k->mlp_bias, &gate)))
            return st;
        if ((st = fib_graph_set_activation(H->graph, gate, FIB_ACT_SILU, 0.0)))
            return fib_model_rewrap(st, H->dir, name);
        snprintf(name, sizeof name, "%s.mlp.up_proj", layer);
        if ((st = add_dense(H, n2, name, k->intermediate, k->hidden, k->mlp_bias, &up)))
            return st;
        snprintf(name, sizeof name, "%s.mlp.product", layer);
        st = fib_graph_add_product(H->graph, gate, up, &prod);
        if ((st = named(H, st, prod, name, H->dir)))
            return st;
        snprintf(name, sizeof name, "%s.mlp.down_proj", layer);
        if ((st = add_dense(H, prod, name, k->hidden, k->intermediate, k->mlp_bias,
                            &down)))
            return st;
        snprintf(name, sizeof name, "%s.mlp_residual", layer);
        if ((st = add_sum(H, r1, down, name, &r2)))
            return st;
        h = r2;
    }
    int32_t norm, head;
    if ((st = add_norm(H, k, h, "model.norm.weight", &norm)))
        return st;
    if (!k->tied)
        return add_dense(H, norm, "lm_head", k->vocab, k->hidden, false, &head);
    /* the tied head borrows the embedding matrix: [vocab, hidden] is the
     * dense layout of a map from hidden to vocab, whose values the
     * embedding has found finite */
    uint32_t flags;
    const void *matrix = tied_matrix(H, embedding, emb, k->hidden, &flags);
    st = fib_dense_add_over_checked(H->graph, norm, k->vocab, emb->dtype, matrix, k->hidden,
                                    NULL, flags, &checked, &head);
    return named(H, st, head, "lm_head", path);
}

/* ---- GPT-2 ------------------------------------------------------------------ */

/* GPT-2 stores its projections as Conv1D weights [in, out]: dense blocks
 * stored transposed, read in place from the mapping. */

static int32_t same_dtype(const hf_dir *H, const fib_st_tensor *a,
                          const fib_st_tensor *b)
{
    if (a->dtype == b->dtype)
        return FIB_OK;
    return fib_error(FIB_E_FORMAT, "%s: tensor '%s' is %s but '%s' is %s; a "
                     "block's tensors must share a dtype", H->dir, b->name,
                     fib_st_dtype_name(b->file_dtype), a->name,
                     fib_st_dtype_name(a->file_dtype));
}

/* `<prefix>.weight` of shape (d0, d1) (n_dims as tensor takes them) and
 * `<prefix>.bias` of n_bias values, in one dtype; path: the weight's file. */
static int32_t weight_and_bias(hf_dir *H, const char *prefix, int32_t n_dims, int64_t d0,
                               int64_t d1, int64_t n_bias, const fib_st_tensor **w,
                               const fib_st_tensor **b, const char **path)
{
    char wname[300], bname[300];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(bname, sizeof bname, "%s.bias", prefix);
    const char *bpath;
    int32_t st = tensor(H, wname, n_dims, d0, d1, w, path);
    if (st || (st = tensor(H, bname, 1, n_bias, 0, b, &bpath)))
        return st;
    return same_dtype(H, *w, *b);
}

static int32_t gpt2_norm(hf_dir *H, const hf_config *k, int32_t source,
                         const char *prefix, int32_t *id)
{
    const fib_st_tensor *w, *b;
    const char *path;
    int32_t st = weight_and_bias(H, prefix, 1, k->hidden, 0, k->hidden, &w, &b, &path);
    if (st)
        return st;
    st = fib_graph_add_norm(H->graph, source, FIB_NORM_LAYER, w->dtype, w->data,
                            b->data, k->eps, H->copy ? FIB_COPY : 0u, id);
    return named(H, st, *id, prefix, path);
}

/* A Conv1D layer (weight [in, out], bias [out]) as a dense group. */
static int32_t gpt2_conv1d(hf_dir *H, int32_t source, const char *prefix,
                           int64_t in, int64_t out, int32_t *id)
{
    const fib_st_tensor *w, *b;
    const char *path;
    int32_t st = weight_and_bias(H, prefix, 2, in, out, out, &w, &b, &path);
    if (st)
        return st;
    st = fib_graph_add_dense_transposed(H->graph, source, out, w->dtype, w->data, out,
                                        b->data, H->copy ? FIB_COPY : 0u, id);
    return named(H, st, *id, prefix, path);
}

static int32_t gpt2_attention(hf_dir *H, const hf_config *k, int32_t source,
                              const char *block, int32_t *id)
{
    int64_t e = k->hidden;
    char name[300];
    const fib_st_tensor *w, *b, *pw, *pb;
    const char *path, *p;
    snprintf(name, sizeof name, "%s.attn.c_attn.weight", block);
    int32_t st = tensor(H, name, 2, e, 3 * e, &w, &path);
    snprintf(name, sizeof name, "%s.attn.c_attn.bias", block);
    if (st || (st = tensor(H, name, 1, 3 * e, 0, &b, &p)))
        return st;
    snprintf(name, sizeof name, "%s.attn.c_proj.weight", block);
    if ((st = tensor(H, name, 2, e, e, &pw, &p)))
        return st;
    snprintf(name, sizeof name, "%s.attn.c_proj.bias", block);
    if ((st = tensor(H, name, 1, e, 0, &pb, &p)) || (st = same_dtype(H, w, b)) ||
        (st = same_dtype(H, w, pw)) || (st = same_dtype(H, w, pb)))
        return st;
    /* c_attn [E, 3E]: columns 0..E-1 are q, then k, then v */
    fib_attention_options opt;
    fib_attention_options_init(&opt, sizeof opt);
    opt.n_heads = opt.n_kv_heads = k->heads;
    opt.causal = 1;
    opt.scale = k->scale;
    st = fib_attention_add_transposed(H->graph, source, &opt, w->dtype, w->data, b->data,
                                      pw->data, pb->data, H->copy ? FIB_COPY : 0u, id);
    snprintf(name, sizeof name, "%s.attn", block);
    if (st != FIB_OK)
        return st == FIB_E_NOMEM ? st : fib_model_rewrap(st, path, name);
    static const char *const parts[5] = {"q", "k", "v", "core", "c_proj"};
    for (int i = 0; i < 5 && st == FIB_OK; i++) {
        snprintf(name, sizeof name, "%s.attn.%s", block, parts[i]);
        st = named(H, FIB_OK, *id - 4 + i, name, path);
    }
    /* the causal-mask buffers of older checkpoints: the mask itself */
    const fib_st_tensor *unused;
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s.attn.%s", block, i ? "masked_bias" : "bias");
        for (int64_t f = 0; f < H->n_files; f++)
            if ((unused = fib_st_find(H->files[f], name)))
                H->used[f][unused - H->files[f]->tensors] = true;
    }
    return st;
}

static int32_t build_gpt2(hf_dir *H, const hf_config *k)
{
    /* transformers writes GPT2LMHeadModel's tensors under "transformer.";
     * the hub's original checkpoints have no prefix */
    const char *pre = "";
    for (int64_t f = 0; f < H->n_files; f++)
        if (fib_st_find(H->files[f], "transformer.wte.weight"))
            pre = "transformer.";
    char name[300], block[64];
    int32_t x, h, st;
    st = fib_graph_add_input_positions(H->graph, k->vocab, k->positions, 1, &x);
    if ((st = named(H, st, x, "input_ids", H->dir)) != FIB_OK)
        return st;
    const fib_st_tensor *wte, *wpe;
    const char *path, *ppath;
    snprintf(name, sizeof name, "%swte.weight", pre);
    if ((st = tensor(H, name, 2, k->vocab, k->hidden, &wte, &path)))
        return st;
    snprintf(name, sizeof name, "%swpe.weight", pre);
    if ((st = tensor(H, name, 2, k->max_positions,
                     k->hidden, &wpe, &ppath)))
        return st;
    fib_finite_values checked = {0};
    st = fib_token_embedding_add(H->graph, x, k->hidden, wte->dtype, wte->data,
                                 H->copy ? FIB_COPY : 0u, &checked, &h);
    snprintf(name, sizeof name, "%swte", pre);
    if ((st = named(H, st, h, name, path)))
        return st;
    int32_t embedding = h;
    st = fib_graph_add_position_shift(H->graph, h, wpe->dtype, wpe->data, &h);
    snprintf(name, sizeof name, "%swpe", pre);
    if ((st = named(H, st, h, name, ppath)))
        return st;
    for (int64_t i = 0; i < k->layers; i++) {
        snprintf(block, sizeof block, "%sh.%lld", pre, (long long)i);
        int32_t n1, att, r1, n2, fc, proj;
        snprintf(name, sizeof name, "%s.ln_1", block);
        if ((st = gpt2_norm(H, k, h, name, &n1)) ||
            (st = gpt2_attention(H, k, n1, block, &att)))
            return st;
        snprintf(name, sizeof name, "%s.attention_residual", block);
        if ((st = add_sum(H, h, att, name, &r1)))
            return st;
        snprintf(name, sizeof name, "%s.ln_2", block);
        if ((st = gpt2_norm(H, k, r1, name, &n2)))
            return st;
        snprintf(name, sizeof name, "%s.mlp.c_fc", block);
        if ((st = gpt2_conv1d(H, n2, name, k->hidden, k->intermediate, &fc)))
            return st;
        if ((st = fib_graph_set_activation(H->graph, fc, k->activation, 0.0)))
            return fib_model_rewrap(st, H->dir, name);
        snprintf(name, sizeof name, "%s.mlp.c_proj", block);
        if ((st = gpt2_conv1d(H, fc, name, k->intermediate, k->hidden, &proj)))
            return st;
        snprintf(name, sizeof name, "%s.mlp_residual", block);
        if ((st = add_sum(H, r1, proj, name, &h)))
            return st;
    }
    int32_t norm, head;
    snprintf(name, sizeof name, "%sln_f", pre);
    if ((st = gpt2_norm(H, k, h, name, &norm)))
        return st;
    if (!k->tied)
        return add_dense(H, norm, "lm_head", k->vocab, k->hidden, false, &head);
    uint32_t flags;
    const void *matrix = tied_matrix(H, embedding, wte, k->hidden, &flags);
    st = fib_dense_add_over_checked(H->graph, norm, k->vocab, wte->dtype, matrix, k->hidden,
                                    NULL, flags, &checked, &head);
    return named(H, st, head, "lm_head", path);
}

/* ---- BERT ------------------------------------------------------------------- */

/* BERT's self-attention: query, key, value and attention.output.dense, all
 * nn.Linear with biases, bidirectional (no mask). */
static int32_t bert_attention(hf_dir *H, const hf_config *k, int32_t source,
                              const char *layer, int32_t *id)
{
    static const char *const proj[4] = {"attention.self.query", "attention.self.key",
                                        "attention.self.value", "attention.output.dense"};
    const fib_st_tensor *t[8];
    const char *path = NULL, *p;
    char name[300];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "%s.%s.%s", layer, proj[i / 2],
                 i % 2 ? "bias" : "weight");
        int32_t st = tensor(H, name, 2 - i % 2, k->hidden, k->hidden, &t[i], &p);
        if (st || (i > 0 && (st = same_dtype(H, t[0], t[i]))))
            return st;
        if (!path)
            path = p;
    }
    fib_attention_options o;
    fib_attention_options_init(&o, sizeof o);
    o.n_heads = o.n_kv_heads = k->heads;
    int32_t st = fib_graph_add_attention_ex(
        H->graph, source, &o, t[0]->dtype, t[0]->data, t[1]->data, t[2]->data,
        t[3]->data, t[4]->data, t[5]->data, t[6]->data, t[7]->data,
        H->copy ? FIB_COPY : 0u, id);
    snprintf(name, sizeof name, "%s.attention", layer);
    if (st != FIB_OK)
        return fib_model_rewrap(st, path, name);
    static const char *const parts[5] = {"attention.self.query", "attention.self.key",
                                         "attention.self.value", "attention.self.core",
                                         "attention.output.dense"};
    for (int i = 0; i < 5 && st == FIB_OK; i++) {
        snprintf(name, sizeof name, "%s.%s", layer, parts[i]);
        st = named(H, FIB_OK, *id - 4 + i, name, path);
    }
    return st;
}

/* The heads stored beside the encoder that the graph leaves out (the
 * pooler and BertForPreTraining's next-sentence head: they read the first
 * position only): their shapes are checked (docs/model-files.md). */
static int32_t bert_heads(hf_dir *H, const hf_config *k, const char *pre)
{
    const struct { const char *name; bool prefixed; int32_t n_dims; int64_t d0, d1; } heads[] = {
        {"pooler.dense.weight", true, 2, k->hidden, k->hidden},
        {"pooler.dense.bias", true, 1, k->hidden, 0},
        {"cls.seq_relationship.weight", false, 2, 2, k->hidden},
        {"cls.seq_relationship.bias", false, 1, 2, 0},
    };
    char name[300];
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) {
        snprintf(name, sizeof name, "%s%s", heads[i].prefixed ? pre : "", heads[i].name);
        const fib_st_tensor *t;
        const char *path;
        int32_t st = stored(H, name) ? tensor(H, name, heads[i].n_dims, heads[i].d0,
                                              heads[i].d1, &t, &path) : FIB_OK;
        if (st)
            return st;
    }
    return FIB_OK;
}

/* Whether two stored tensors of the same shape hold the same values. */
static bool same_values(const fib_st_tensor *a, const fib_st_tensor *b)
{
    for (int64_t i = 0; i < a->n_elements; i++)
        if (fib_load(a->dtype, a->data, i) != fib_load(b->dtype, b->data, i))
            return false;
    return true;
}

/* A second stored copy of a tied tensor (older files store both): used,
 * and refused by name unless it holds the same values as the one read. */
static int32_t tied_copy(hf_dir *H, const char *name, const fib_st_tensor *kept,
                         const char *why)
{
    const fib_st_tensor *t;
    const char *path;
    if (!stored(H, name))
        return FIB_OK;
    int32_t st = tensor(H, name, kept->n_dims, kept->shape[0],
                        kept->n_dims == 2 ? kept->shape[1] : 0, &t, &path);
    if (st == FIB_OK && !same_values(t, kept))
        st = fib_error(FIB_E_FORMAT, "%s: tensor '%s' differs from '%s', which it is tied "
                       "to (%s)", path, name, kept->name, why);
    return st;
}

/* The masked-LM head of BertForMaskedLM and BertForPreTraining, when any
 * cls.predictions tensor is stored: transform.dense with hidden_act,
 * transform.LayerNorm, and the decoder to the vocabulary, its weight the
 * word embeddings (tie_word_embeddings, true by default; else
 * cls.predictions.decoder.weight) and its bias cls.predictions.bias. It is
 * part of the analysed function: the graph's output is then the MLM
 * logits at every position. */
static int32_t bert_mlm_head(hf_dir *H, const hf_config *k, int32_t source,
                             const fib_st_tensor *words, const char *words_path,
                             const fib_finite_values *words_checked, int32_t *id)
{
    bool any = false;
    for (int64_t f = 0; f < H->n_files && !any; f++)
        for (int64_t t = 0; t < H->files[f]->n_tensors && !any; t++)
            any = strncmp(H->files[f]->tensors[t].name, "cls.predictions.", 16) == 0;
    if (!any)
        return FIB_OK;
    int32_t dense, norm, st;
    if ((st = add_dense(H, source, "cls.predictions.transform.dense", k->hidden, k->hidden,
                        true, &dense)))
        return st;
    if ((st = fib_graph_set_activation(H->graph, dense, k->activation, 0.0)))
        return fib_model_rewrap(st, H->dir, "cls.predictions.transform.dense");
    if ((st = gpt2_norm(H, k, dense, "cls.predictions.transform.LayerNorm", &norm)))
        return st;
    const fib_st_tensor *w = words, *b;
    const char *path = words_path, *bpath;
    const char *bias = stored(H, "cls.predictions.bias") ? "cls.predictions.bias"
                                                         : "cls.predictions.decoder.bias";
    if ((st = tensor(H, bias, 1, k->vocab, 0, &b, &bpath)) ||
        (strcmp(bias, "cls.predictions.bias") == 0 &&
         (st = tied_copy(H, "cls.predictions.decoder.bias", b, "the decoder's bias"))))
        return st;
    if (k->tied)
        st = tied_copy(H, "cls.predictions.decoder.weight", words, "tie_word_embeddings");
    else
        st = tensor(H, "cls.predictions.decoder.weight", 2, k->vocab, k->hidden, &w, &path);
    if (st || (st = same_dtype(H, w, b)))
        return st;
    /* tied, the decoder reads the word table the embedding has found
     * finite: only its bias is checked (an untied decoder is checked whole) */
    st = fib_dense_add_over_checked(H->graph, norm, k->vocab, w->dtype, w->data, k->hidden,
                                    b->data, H->copy ? FIB_COPY : 0u, words_checked, id);
    return named(H, st, *id, "cls.predictions.decoder", path);
}

/* A one-hot input over the positions and its embedding [rows, hidden]
 * (the stored tensor in *t, its file in *path; *checked, when not NULL,
 * the stored values found finite). */
static int32_t bert_embedding(hf_dir *H, const hf_config *k, const char *input,
                              int64_t rows, const char *weight, int32_t *id,
                              const fib_st_tensor **t, const char **path,
                              fib_finite_values *checked)
{
    int32_t x, st = fib_graph_add_input_positions(H->graph, rows, k->positions, 1, &x);
    if ((st = named(H, st, x, input, H->dir)))
        return st;
    char name[300];
    snprintf(name, sizeof name, "%s.weight", weight);
    if ((st = tensor(H, name, 2, rows, k->hidden, t, path)))
        return st;
    st = fib_token_embedding_add(H->graph, x, k->hidden, (*t)->dtype, (*t)->data,
                                 H->copy ? FIB_COPY : 0u,
                                 checked, id);
    return named(H, st, *id, weight, *path);
}

/* The graph has two inputs, input_ids and token_type_ids (one-hot over
 * max_position_embeddings positions each): the token-type embedding is a
 * second embedding added to the word embedding, so every token type counts
 * and a merge holds for sentence pairs too. Post-norm: each residual sum is
 * followed by its LayerNorm, which the next block reads. */
static int32_t build_bert(hf_dir *H, const hf_config *k)
{
    const char *pre = "";
    for (int64_t f = 0; f < H->n_files; f++)
        if (fib_st_find(H->files[f], "bert.embeddings.word_embeddings.weight"))
            pre = "bert.";
    char name[300], weight[300], layer[64];
    int32_t words, types, h, st;
    const fib_st_tensor *word_table, *type_table;
    const char *word_path, *type_path;
    fib_finite_values words_checked = {0};
    snprintf(weight, sizeof weight, "%sembeddings.word_embeddings", pre);
    if ((st = bert_embedding(H, k, "input_ids", k->vocab, weight, &words, &word_table,
                             &word_path, &words_checked)))
        return st;
    snprintf(weight, sizeof weight, "%sembeddings.token_type_embeddings", pre);
    if ((st = bert_embedding(H, k, "token_type_ids", k->type_vocab, weight, &types,
                             &type_table, &type_path, NULL)))
        return st;
    snprintf(name, sizeof name, "%sembeddings.word_and_token_type", pre);
    if ((st = add_sum(H, words, types, name, &h)))
        return st;
    const fib_st_tensor *pos;
    const char *path;
    snprintf(name, sizeof name, "%sembeddings.position_embeddings.weight", pre);
    if ((st = tensor(H, name, 2, k->max_positions, k->hidden, &pos, &path)))
        return st;
    st = fib_graph_add_position_shift(H->graph, h, pos->dtype, pos->data, &h);
    snprintf(name, sizeof name, "%sembeddings.position_embeddings", pre);
    if ((st = named(H, st, h, name, path)))
        return st;
    snprintf(name, sizeof name, "%sembeddings.LayerNorm", pre);
    if ((st = gpt2_norm(H, k, h, name, &h)))
        return st;
    for (int64_t i = 0; i < k->layers; i++) {
        snprintf(layer, sizeof layer, "%sencoder.layer.%lld", pre, (long long)i);
        int32_t att, r1, inter, out, r2;
        if ((st = bert_attention(H, k, h, layer, &att)))
            return st;
        snprintf(name, sizeof name, "%s.attention_residual", layer);
        if ((st = add_sum(H, h, att, name, &r1)))
            return st;
        snprintf(name, sizeof name, "%s.attention.output.LayerNorm", layer);
        if ((st = gpt2_norm(H, k, r1, name, &h)))
            return st;
        snprintf(name, sizeof name, "%s.intermediate.dense", layer);
        if ((st = add_dense(H, h, name, k->intermediate, k->hidden, true, &inter)))
            return st;
        if ((st = fib_graph_set_activation(H->graph, inter, k->activation, 0.0)))
            return fib_model_rewrap(st, H->dir, name);
        snprintf(name, sizeof name, "%s.output.dense", layer);
        if ((st = add_dense(H, inter, name, k->hidden, k->intermediate, true, &out)))
            return st;
        snprintf(name, sizeof name, "%s.mlp_residual", layer);
        if ((st = add_sum(H, h, out, name, &r2)))
            return st;
        snprintf(name, sizeof name, "%s.output.LayerNorm", layer);
        if ((st = gpt2_norm(H, k, r2, name, &h)))
            return st;
    }
    int32_t head;
    if ((st = bert_mlm_head(H, k, h, word_table, word_path, &words_checked, &head)))
        return st;
    return bert_heads(H, k, pre);
}

static int32_t build(hf_dir *H, const hf_config *k)
{
    if (k->bert)
        return build_bert(H, k);
    return k->gpt2 ? build_gpt2(H, k) : build_llama(H, k);
}

/* Every tensor of the files was read. */
static int32_t check_all_used(const hf_dir *H)
{
    for (int64_t f = 0; f < H->n_files; f++)
        for (int64_t t = 0; t < H->files[f]->n_tensors; t++)
            if (!H->used[f][t])
                return fib_error(FIB_E_FORMAT, "%s: tensor '%s' is not part of "
                                 "the model config.json describes (an "
                                 "unread tensor would change the computation "
                                 "unseen)", H->files[f]->path,
                                 H->files[f]->tensors[t].name);
    return FIB_OK;
}

static void release_file(void *handle)
{
    fib_st_close(handle);
}

int32_t fib_model_load_hf(const char *dir, bool copy, fib_graph **out)
{
    hf_dir H = {0};
    H.dir = dir;
    H.copy = copy;
    if (snprintf(H.config_path, sizeof H.config_path, "%s/config.json", dir) >=
        (int)sizeof H.config_path)
        return fib_error(FIB_E_INVALID, "%s: path too long", dir);
    fib_json *config = NULL;
    hf_config k;
    int32_t st = parse_file(H.config_path, &config);
    if (st == FIB_OK)
        st = read_config(&H, config, &k);
    fib_json_free(config);
    if (st == FIB_OK)
        st = open_files(&H);
    if (st == FIB_OK)
        st = fib_graph_create(&H.graph);
    /* the graph borrows the mapped tensors: it owns the files from here */
    int64_t attached = 0;
    while (st == FIB_OK && !copy && attached < H.n_files) {
        st = fib_graph_attach_mapping(H.graph, H.files[attached], release_file,
                                          fib_st_drop_pages);
        if (st == FIB_OK)
            attached++;
    }
    if (st == FIB_OK)
        st = build(&H, &k);
    if (st == FIB_OK)
        st = check_all_used(&H);
    for (int64_t f = copy ? 0 : attached; f < H.n_files; f++)
        fib_st_close(H.files[f]);
    for (int64_t f = 0; f < H.n_files; f++)
        fib_free(H.used[f]);
    fib_free(H.files);
    fib_free(H.used);
    fib_json_free(H.index);
    if (st != FIB_OK) {
        fib_graph_free(H.graph);
        return st;
    }
    *out = H.graph;
    return FIB_OK;
}
