#!/usr/bin/env python3
"""HF parity of lop's CUDA backend on full-size shapes (run on the GPU machine by scripts/gpu_check.sh).

For each synthetic shape (LLaMA-7B, and the width-pruned 4.9B with 21 heads / FFN 7155 in blocks 4..29),
HF transformers' LlamaForCausalLM gets lop's synthetic weights, rebuilt in torch from the same
counter-based function (lop_synth_value: splitmix64 on int64 with masked shifts; checked here against an
exact pure-Python version), with per-layer q/k/v/o and gate/up/down Linear shapes for the pruned blocks.
Oracle: HF in float32 on fp16-rounded weights (the weights lop multiplies). Compared at the prompt's last
position and 8 teacher-forced decode steps (lop: one token per forward, decode kernels; HF: one full
forward, same math):
  err(lop fp16)  = max |lop - ref| / max |ref| over the 9 rows
  err(HF fp16)   = the same for HF's own fp16 forward
Tolerance: err(lop) <= max(2 * err(HF fp16), 1e-2) -- lop in half precision may be as far from the fp32
answer as twice what HF's half-precision forward is, never worse. Also reports argmax agreement.
Usage: gpu_hf_parity.py LOP_BINARY OUTDIR
"""
import json
import os
import struct
import subprocess
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

LOP = sys.argv[1]
OUT = sys.argv[2]
DEV = "cuda"
M64 = (1 << 64) - 1


def s64(c):
    return c - (1 << 64) if c >= (1 << 63) else c


C0, C1, C2 = s64(0x9E3779B97F4A7C15), s64(0xBF58476D1CE4E5B9), s64(0x94D049BB133111EB)


def srl(x, k):  # logical right shift of int64
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix_t(x):
    x = x + C0
    x = (x ^ srl(x, 30)) * C1
    x = (x ^ srl(x, 27)) * C2
    return x ^ srl(x, 31)


STD = struct.unpack("f", struct.pack("f", 0.02))[0]


def synth_t(seed, tid, shape):
    n = 1
    for d in shape:
        n *= d
    out = torch.empty(n, dtype=torch.float32, device=DEV)
    base = s64((seed ^ (tid << 40)) & M64)
    step = 1 << 26
    for i0 in range(0, n, step):
        idx = torch.arange(i0, min(n, i0 + step), dtype=torch.int64, device=DEV)
        h = splitmix_t(idx ^ base)
        u = srl(h, 11).to(torch.float64) * (1.0 / 9007199254740992.0)
        out[i0 : i0 + idx.numel()] = ((2.0 * u - 1.0) * 1.7320508075688772 * STD).to(torch.float32)
    return out.view(*shape)


def synth_py(seed, tid, idx):  # exact reference of lop_synth_value
    def sm(x):
        x = (x + 0x9E3779B97F4A7C15) & M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
        return x ^ (x >> 31)

    h = sm(seed ^ (tid << 40) ^ idx)
    v = (2.0 * (float(h >> 11) / 9007199254740992.0) - 1.0) * 1.7320508075688772 * STD
    return struct.unpack("f", struct.pack("f", v))[0]


def tid(layer, field):
    return 16 + layer * 32 + field


def build(shapes, dim, vocab, ffn_default, heads_default):
    """shapes: per layer (heads, ffn); head_dim 128; MHA."""
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=ffn_default, num_hidden_layers=len(shapes),
                      num_attention_heads=heads_default, num_key_value_heads=heads_default, max_position_embeddings=2048,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, attn_implementation="eager")
    torch.set_default_dtype(torch.float32)
    with torch.device(DEV):
        model = LlamaForCausalLM(cfg)
    hd = dim // heads_default
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(synth_t(0, 0, (vocab, dim)))
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.copy_(synth_t(0, 2, (vocab, dim)))
        for l, (h, f) in enumerate(shapes):
            L = model.model.layers[l]
            a, mlp = L.self_attn, L.mlp
            if h != heads_default:
                a.q_proj = torch.nn.Linear(dim, h * hd, bias=False, device=DEV)
                a.k_proj = torch.nn.Linear(dim, h * hd, bias=False, device=DEV)
                a.v_proj = torch.nn.Linear(dim, h * hd, bias=False, device=DEV)
                a.o_proj = torch.nn.Linear(h * hd, dim, bias=False, device=DEV)
            if f != ffn_default:
                mlp.gate_proj = torch.nn.Linear(dim, f, bias=False, device=DEV)
                mlp.up_proj = torch.nn.Linear(dim, f, bias=False, device=DEV)
                mlp.down_proj = torch.nn.Linear(f, dim, bias=False, device=DEV)
            L.input_layernorm.weight.fill_(1.0)
            L.post_attention_layernorm.weight.fill_(1.0)
            a.q_proj.weight.copy_(synth_t(0, tid(l, 1), (h * hd, dim)))
            a.k_proj.weight.copy_(synth_t(0, tid(l, 2), (h * hd, dim)))
            a.v_proj.weight.copy_(synth_t(0, tid(l, 3), (h * hd, dim)))
            a.o_proj.weight.copy_(synth_t(0, tid(l, 4), (dim, h * hd)))
            mlp.gate_proj.weight.copy_(synth_t(0, tid(l, 10), (f, dim)))
            mlp.up_proj.weight.copy_(synth_t(0, tid(l, 11), (f, dim)))
            mlp.down_proj.weight.copy_(synth_t(0, tid(l, 12), (dim, f)))
        # lop multiplies fp16-rounded weights: the fp32 oracle uses the same numbers
        for p in model.parameters():
            p.copy_(p.half().float())
    model.eval()
    return model


def lop_logits(spec, prompt, then, path):
    cmd = [LOP, "-q", "logits", spec, "--device", "cuda", "--ids", ",".join(map(str, prompt)), "--then",
           ",".join(map(str, then)), "-o", path]
    subprocess.run(cmd, check=True)
    return path


def nerr(a, ref):
    return float((a - ref).abs().max() / ref.abs().max())


def run_case(name, spec, shapes, results):
    vocab, dim = 32000, 4096
    prompt = [1, 450, 4955, 310, 278, 4223, 4086, 16410, 411, 278, 18647, 310]  # 12 tokens
    then = [2, 17, 99, 1234, 31999, 5, 600, 7]  # 8 teacher-forced decode tokens
    t0 = time.time()
    path = lop_logits(spec, prompt, then, os.path.join("/tmp", name + ".lop.bin"))
    lop = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.float32).view(9, vocab).to(DEV)
    t_lop = time.time() - t0
    model = build(shapes, dim, vocab, 11008, 32)
    ids = torch.tensor([prompt + then], device=DEV)
    with torch.no_grad():
        ref = model(ids).logits[0, 11:20].float()
        model.half()
        hf16 = model(ids).logits[0, 11:20].float()
    del model
    torch.cuda.empty_cache()
    e_lop, e_hf = nerr(lop, ref), nerr(hf16, ref)
    tol = max(2 * e_hf, 1e-2)
    agree_lop = int((lop.argmax(-1) == ref.argmax(-1)).sum())
    agree_hf = int((hf16.argmax(-1) == ref.argmax(-1)).sum())
    row_err = [round(nerr(lop[i], ref[i]), 5) for i in range(9)]
    ok = e_lop <= tol
    results[name] = dict(spec=spec, err_lop_fp16=e_lop, err_hf_fp16=e_hf, tolerance=tol, passed=ok,
                         argmax_agree_lop=agree_lop, argmax_agree_hf16=agree_hf, rows=9, per_row_err_lop=row_err,
                         seconds=round(time.time() - t0, 1), lop_seconds=round(t_lop, 1))
    print(f"parity {name:10s} lop fp16 err {e_lop:.2e}  HF fp16 err {e_hf:.2e}  tolerance {tol:.2e}  "
          f"argmax agree lop {agree_lop}/9 HF16 {agree_hf}/9  {'PASS' if ok else 'FAIL'}", flush=True)


def main():
    # the torch synth must equal the exact definition
    for t, idx in [(0, 5), (tid(3, 1), 1000003), (tid(31, 12), 45088767), (2, 131071999)]:
        want = synth_py(0, t, idx)
        n = idx + 1
        got = float(synth_t(0, t, (n,))[idx]) if n < (1 << 28) else None
        assert got == want, (t, idx, got, want)
    print("torch synth == lop_synth_value on samples", flush=True)
    results = {}
    run_case("llama7b", "synth:llama-7b", [(32, 11008)] * 32, results)
    width = [(32, 11008) if (i < 4 or i > 29) else (21, 7155) for i in range(32)]
    run_case("width4.9b", "synth:llama-7b:heads=21@4-29:ffn=7155@4-29", width, results)
    with open(os.path.join(OUT, "hf_parity.json"), "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(0), torch=torch.__version__,
                       transformers=__import__("transformers").__version__, results=results), f, indent=1)
    sys.exit(0 if all(r["passed"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
