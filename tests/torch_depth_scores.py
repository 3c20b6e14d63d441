#!/usr/bin/env python3
"""PyTorch re-implementation of lop's depth-pruning block scores, compared with lop's on SmolLM2.

    /opt/hfenv/bin/python tests/torch_depth_scores.py RUN_DIR [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]
                                                      [--json bench/depth/torch_ranking.json]

RUN_DIR is a `lop prune` output whose pruning.json holds the calibration token ids (any criterion
other than magnitude); the scores of lop's other criteria are read from the pruning.json files beside
it (RUN_DIR's parent, <criterion>-<pct>/pruning.json as bench/depth/run_smollm2.sh writes them).

The model is SmolLM2-135M-Instruct from the GGUF, dequantised by transformers (stock LlamaForCausalLM,
eager attention). On lop's calibration ids (10 x 128), with L = mean next-token cross-entropy over all
positions of all samples (HF's loss on the batch):
  taylor     |sum over the block's parameters of sum(W * dL/dW)|   (autograd, float64)
  ppl        exp(L) of the model with the block deleted from model.model.layers (float64)
  magnitude  sum |W| over the block's parameters
  bi         1 - cos(hidden_states[n], hidden_states[n+1]) averaged over every token (float64)
It prints, per criterion, the largest relative score difference, Spearman's rank correlation, whether
the whole order is identical, and the blocks each would remove at 20 % and 35 % of the parameters under
the "+" rule (blocks 0-3 and 28-29 kept), next to lop's.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fixtures"))
sys.dont_write_bytecode = True
import make_hf_fixtures as mhf  # noqa: E402


def mean_ce(model, ids):
    logits = model(input_ids=ids, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def taylor(model, ids):
    model.zero_grad()
    mean_ce(model, ids).backward()
    return [abs(sum(float((p.detach() * p.grad).sum()) for p in layer.parameters())) for layer in model.model.layers]


@torch.no_grad()
def ppl(model, ids):
    layers = model.model.layers
    out = []
    for n in range(len(layers)):
        model.model.layers = torch.nn.ModuleList([l for i, l in enumerate(layers) if i != n])
        model.config.num_hidden_layers = len(layers) - 1
        out.append(float(torch.exp(mean_ce(model, ids))))
    model.model.layers = layers
    model.config.num_hidden_layers = len(layers)
    return out


@torch.no_grad()
def magnitude(model):
    return [float(sum(p.detach().abs().sum() for p in layer.parameters())) for layer in model.model.layers]


@torch.no_grad()
def bi(model, ids):
    hs = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    # hidden_states[n] is the input of block n; the last entry is after the final norm, so the output
    # of the last block is taken by hooking it
    outs = []
    h = model.model.layers[-1].register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o))
    model(input_ids=ids, use_cache=False)
    h.remove()
    seq = list(hs[:-1]) + [outs[0]]
    return [float(1 - torch.nn.functional.cosine_similarity(seq[n], seq[n + 1], dim=-1).mean())
            for n in range(len(model.model.layers))]


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def removal(scores, n_remove, n_layers):
    """lowest first among the blocks the + rule allows; ties to the later block (lop's rule)"""
    cand = [l for l in range(n_layers) if 4 <= l < n_layers - 2]
    cand.sort(key=lambda l: (scores[l], -l))
    return sorted(cand[:n_remove])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--gguf", default=str(HERE.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    rep = json.loads((Path(a.run_dir) / "pruning.json").read_text())
    ids = torch.tensor([s["ids"] for s in rep["calibration"]["samples"]])
    _, model, how = mhf.load_smollm2(str(Path(a.gguf).parent)) if Path(a.gguf).name == mhf.SMOL_GGUF else sys.exit(
        "expects the SmolLM2 GGUF file name")
    model = model.double()
    n_layers = len(model.model.layers)
    t0 = time.time()
    ours = {"taylor": taylor(model, ids), "ppl": ppl(model, ids), "magnitude": magnitude(model.float()),
            "bi": bi(model.double(), ids)}
    secs = time.time() - t0
    base = Path(a.run_dir).parent
    result = {"script": "tests/torch_depth_scores.py", "torch": torch.__version__, "model_loader": how,
              "compute_dtype": "float64 (magnitude: float32 sums of the float32 weights)", "calibration_from": str(a.run_dir),
              "torch_seconds_all_criteria": round(secs, 1), "criteria": {}}
    ok = True
    for crit, sc in ours.items():
        lop_files = sorted(base.glob(f"{crit}-*/pruning.json"))
        if not lop_files:
            print(f"{crit}: no lop run under {base}")
            continue
        lrep = json.loads(lop_files[0].read_text())
        lop = lrep["scores"]
        rel = max(abs(x - y) / max(abs(y), 1e-30) for x, y in zip(lop, sc))
        same_order = list(np.argsort(lop, kind="stable")) == list(np.argsort(sc, kind="stable"))
        entry = {"lop": lop, "torch": sc, "max_rel_diff": rel, "spearman": spearman(lop, sc), "same_order": same_order}
        for pct, k in ((20, 8), (35, 13)):
            lf = base / f"{crit}-{pct}" / "pruning.json"
            lrem = json.loads(lf.read_text())["removed"] if lf.exists() else None
            entry[f"removed_{pct}"] = {"lop": lrem, "torch": removal(sc, k, n_layers)}
            ok = ok and lrem == removal(sc, k, n_layers)
        result["criteria"][crit] = entry
        print(f"{crit:9s} max rel diff {rel:.1e}  spearman {entry['spearman']:.6f}  same order {same_order}  "
              f"20%: lop {entry['removed_20']['lop']} torch {entry['removed_20']['torch']}  "
              f"35%: same {entry['removed_35']['lop'] == entry['removed_35']['torch']}")
    result["all_removals_identical"] = ok
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
