#!/usr/bin/env python3
"""WikiText-2 perplexity of depth-pruned SmolLM2 models, evaluated by stock HF transformers (float32).

    python3 bench/depth/hf_wikitext_ppl.py --gguf DIR/SmolLM2-135M-Instruct.Q4_1.gguf --ids wiki_ids.bin
                                           --runs runs.json [--device cuda] [--out results.jsonl]

Why: lop's own CPU evaluation of 9 models x 305k tokens takes hours on this 2-core machine; the GPU
machine runs the same protocol in seconds. Inputs come from lop so that only the evaluator changes:
  --ids   the WikiText-2 test text tokenised once by lop with BOS first (bench/tools/wikitext_ppl.c
          --ids-out), int32 little-endian;
  --runs  {"name": [removed block indices], ...} from lop's pruning.json files (bench/depth/make_runs.py).
The model is SmolLM2-135M-Instruct from the GGUF, dequantised by transformers (from_pretrained with
gguf_file=, needs `gguf` and `accelerate`), float32 with TF32 off, eager attention; a pruned model is
the same model with those blocks deleted from model.model.layers, which is exactly the checkpoint
`lop prune` writes (tests/hf_check_pruned.py: logits equal within 2e-6). Protocol as lop's tool:
non-overlapping 128-token windows (last partial one dropped), tokens 1..127 of each window scored,
PPL = exp(mean NLL over all scored tokens).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-windows", type=int, default=0, help="score only the first N windows (checks)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    g = Path(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32,
                                                 attn_implementation="eager").to(a.device).eval()
    ids = np.fromfile(a.ids, dtype=np.int32)
    nw = len(ids) // a.seq
    if a.max_windows:
        nw = min(nw, a.max_windows)
    win = torch.as_tensor(ids[: nw * a.seq].astype(np.int64)).view(nw, a.seq).to(a.device)
    runs = json.loads(Path(a.runs).read_text())
    layers = model.model.layers
    out = []
    dev_name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    for name, removed in runs.items():
        keep = [l for i, l in enumerate(layers) if i not in set(removed)]
        model.model.layers = torch.nn.ModuleList(keep)
        model.config.num_hidden_layers = len(keep)
        t0 = time.time()
        nll, cnt = 0.0, 0
        with torch.no_grad():
            for b in range(0, nw, a.batch):
                x = win[b: b + a.batch]
                lg = model(input_ids=x, use_cache=False).logits.float()
                lp = torch.log_softmax(lg[:, :-1].double(), dim=-1)
                nll -= float(lp.gather(-1, x[:, 1:].unsqueeze(-1)).sum())
                cnt += x[:, 1:].numel()
        if a.device == "cuda":
            torch.cuda.synchronize()
        r = {"run": name, "removed": removed, "layers": len(keep),
             "params": sum(p.numel() for p in model.parameters()), "ppl": float(np.exp(nll / cnt)),
             "mean_nll": nll / cnt, "windows": nw, "scored_tokens": cnt, "text_tokens": int(len(ids)),
             "evaluator": f"HF transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
                          f"float32 (TF32 off), eager, {dev_name}", "seconds": round(time.time() - t0, 2)}
        out.append(r)
        print(json.dumps(r), flush=True)
    model.model.layers = layers
    if a.out:
        Path(a.out).write_text("".join(json.dumps(r) + "\n" for r in out))


if __name__ == "__main__":
    main()
