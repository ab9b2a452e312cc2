#!/usr/bin/env python3
"""`fibration analyze DIR` on Hugging Face checkpoint directories of the
sizes issue 24 names, against one warm read of the same files, measured in
the same run (docs/performance.md quotes these figures):

  gpt2-124M   model_type gpt2: vocab 50257, n_embd 768, 12 layers, 12 heads,
              n_positions 1024, tied head (124 M parameters, 249 MB bf16)
  llama-1.1B  model_type llama: vocab 32000, hidden 2048, intermediate
              5632, 22 layers, 32 query heads, 4 key/value heads, untied
              head (1.1 B parameters, 2.2 GB bf16; TinyLlama's shape)

Weights are random bfloat16 (sign, exponent 2^-7 and 7 random mantissa
bits: finite, no symmetry), written to FOLDER (default /tmp) and deleted at
the end; nothing is committed. A warm read is the best of 3 reads of every
file into one 8 MiB buffer after a first has put them in the page cache;
the command runs RUNS times (best wall and CPU time; peak RSS is the
child's own, wait4). Printed: wall time / read, CPU time (user + system) /
the read's CPU time, and peak RSS / size of the files. On a shared host the
wall time counts the neighbours too: the load average is printed.

Usage: bench_hf.py FIBRATION [FOLDER] [gpt2|llama ...]
Environment: OMP_NUM_THREADS as for the command (default: both 1 and 2);
BENCH_HF_KEEP=1 keeps the checkpoints in FOLDER/bench_hf_NAME and reuses
them in later runs (the same bytes: the generator is seeded per model)."""
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

RUNS = 2


def random_bf16(rng, n):
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    return (bits & np.uint16(0x807F)) | np.uint16(0x3C00)


def write_safetensors(path, shapes, rng):
    """shapes: name -> shape; every tensor random BF16, written a tensor at
    a time."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for shape in shapes.values():
            n = math.prod(shape)
            for start in range(0, n, 1 << 26):
                random_bf16(rng, min(1 << 26, n - start)).tofile(f)


def gpt2(folder, rng):
    v, e, layers, positions = 50257, 768, 12, 1024
    shapes = {"wte.weight": (v, e), "wpe.weight": (positions, e)}
    for i in range(layers):
        p = f"h.{i}."
        shapes.update({p + "ln_1.weight": (e,), p + "ln_1.bias": (e,),
                       p + "attn.c_attn.weight": (e, 3 * e), p + "attn.c_attn.bias": (3 * e,),
                       p + "attn.c_proj.weight": (e, e), p + "attn.c_proj.bias": (e,),
                       p + "ln_2.weight": (e,), p + "ln_2.bias": (e,),
                       p + "mlp.c_fc.weight": (e, 4 * e), p + "mlp.c_fc.bias": (4 * e,),
                       p + "mlp.c_proj.weight": (4 * e, e), p + "mlp.c_proj.bias": (e,)})
    shapes.update({"ln_f.weight": (e,), "ln_f.bias": (e,)})
    config = {"model_type": "gpt2", "vocab_size": v, "n_embd": e, "n_layer": layers,
              "n_head": 12, "n_positions": positions, "n_ctx": positions,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "torch_dtype": "bfloat16"}
    return shapes, config


def llama(folder, rng):
    v, h, inter, layers, heads, kv = 32000, 2048, 5632, 22, 32, 4
    d = h // heads
    shapes = {"model.embed_tokens.weight": (v, h)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (h,),
                       p + "self_attn.q_proj.weight": (heads * d, h),
                       p + "self_attn.k_proj.weight": (kv * d, h),
                       p + "self_attn.v_proj.weight": (kv * d, h),
                       p + "self_attn.o_proj.weight": (h, heads * d),
                       p + "post_attention_layernorm.weight": (h,),
                       p + "mlp.gate_proj.weight": (inter, h),
                       p + "mlp.up_proj.weight": (inter, h),
                       p + "mlp.down_proj.weight": (h, inter)})
    shapes.update({"model.norm.weight": (h,), "lm_head.weight": (v, h)})
    config = {"model_type": "llama", "vocab_size": v, "hidden_size": h,
              "intermediate_size": inter, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048,
              "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16"}
    return shapes, config


def cpu_seconds(usage):
    return usage.ru_utime + usage.ru_stime


def warm_read(paths):
    """(best wall, best CPU seconds) of 3 reads of the files into one
    buffer, after a first."""
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    best = best_cpu = math.inf
    for attempt in range(4):
        start, start_cpu = time.perf_counter(), cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
        for path in paths:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(view):
                    pass
        if attempt:
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) -
                           start_cpu)
    return best, best_cpu


def run(args, threads):
    """(best wall seconds, best CPU seconds, largest peak RSS in bytes) over
    RUNS."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    best, best_cpu, rss = math.inf, math.inf, 0
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, raw, usage = os.wait4(proc.pid, 0)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, cpu_seconds(usage))
        rss = max(rss, usage.ru_maxrss * 1024)
        status = os.waitstatus_to_exitcode(raw)
        if status != 0:
            sys.exit(f"{' '.join(args)}: exit {status}: {proc.stderr.read().decode()}")
        proc.stderr.close()
    return best, best_cpu, rss


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cli = sys.argv[1]
    folder = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
    chosen = sys.argv[3:] or ["gpt2", "llama"]
    threads = [int(os.environ["OMP_NUM_THREADS"])] if "OMP_NUM_THREADS" in os.environ \
        else [1, 2]
    keep = os.environ.get("BENCH_HF_KEEP") == "1"
    print(f"fibration analyze on random bfloat16 checkpoint directories; best of {RUNS} runs; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    _, _, floor = run([cli, "--version"], 1)
    # a child's peak counts from the fork, before exec: never below the
    # image of this Python process
    print(f"peak RSS of `fibration --version` here: {floor / 1e6:.1f} MB (the floor of every "
          f"RSS below)")
    print(f"{'model':<11} {'threads':>7} {'wall s':>7} {'/ read':>7} {'CPU s':>7} "
          f"{'/ read':>7} {'RSS MB':>7} {'/ files':>7}  read wall, CPU s  files MB")
    for name in chosen:
        rng = np.random.default_rng(24 if name == "gpt2" else 25)
        directory = os.path.join(folder, f"bench_hf_{name}" if keep
                                 else f"bench_hf_{name}_{os.getpid()}")
        # a kept directory is complete once its marker is written
        marker = os.path.join(directory, "written")
        reuse = keep and os.path.exists(marker)
        os.makedirs(directory, exist_ok=keep)
        try:
            shapes, config = {"gpt2": gpt2, "llama": llama}[name](directory, rng)
            path = os.path.join(directory, "model.safetensors")
            if not reuse:
                with open(os.path.join(directory, "config.json"), "w") as f:
                    json.dump(config, f)
                write_safetensors(path, shapes, rng)
                if keep:
                    open(marker, "w").close()
            size = os.path.getsize(path)
            read, read_cpu = warm_read([path])
            for t in threads:
                seconds, cpu, rss = run([cli, "analyze", "-q", directory], t)
                label = f"{name}-{sum(math.prod(s) for s in shapes.values()) / 1e9:.2g}B"
                print(f"{label:<11} {t:>7} {seconds:7.2f} {seconds / read:7.2f} {cpu:7.2f} "
                      f"{cpu / read_cpu:7.2f} {rss / 1e6:7.0f} {rss / size:7.3f}  "
                      f"{read:.3f}, {read_cpu:.3f}  {size / 1e6:9.0f}", flush=True)
        finally:
            if not keep:
                shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
