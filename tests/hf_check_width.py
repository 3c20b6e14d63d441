#!/usr/bin/env python3
"""Proves that lop's width-pruned outputs (uniform widths, or --export-padded) are stock HF checkpoints.

    /opt/hfenv/bin/python tests/hf_check_width.py DIR [DIR ...] [--lop build/lop] [--json FILE]

Each DIR is a `lop prune --width ...` output. It is loaded with stock AutoModelForCausalLM (no remote
code, eager attention, float32); every tensor must load (no missing / unexpected / mismatched keys),
and HF's logits on a fixed prompt plus teacher-forced steps are compared with `lop logits DIR`
(max|lop - HF| / max|HF| <= 1e-4, the fixtures' metric).
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True
from hf_check_pruned import TOL, lop_logits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--lop", default="build/lop")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    ids, then = [1, 504, 3458, 282, 4649, 30, 378, 2432], [314, 1330, 28, 3200]
    out, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for d in a.dirs:
            rep = json.loads((Path(d) / "pruning.json").read_text())
            hf, info = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32,
                                                            output_loading_info=True)
            bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
            with torch.no_grad():
                full = hf.eval()(input_ids=torch.tensor([ids + then])).logits[0].float().numpy()
            want = full[len(ids) - 1: len(ids) + len(then)]
            got = lop_logits(a.lop, Path(d).resolve(), ids, then, tmp).reshape(want.shape)
            err = float(np.abs(got - want).max() / np.abs(want).max())
            c = hf.config
            r = {"dir": Path(d).name, "criterion": rep["criterion"], "padded": rep.get("padded", False),
                 "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
                 "intermediate_size": c.intermediate_size, "attention_bias": c.attention_bias,
                 "mlp_bias": getattr(c, "mlp_bias", False), "hf_params": sum(p.numel() for p in hf.parameters()),
                 "bad_keys": bad, "normalised_max_error": err, "ok": not bad and err <= TOL}
            ok = ok and r["ok"]
            out.append(r)
            print(f"{r['dir']:14s} heads {c.num_attention_heads}/{c.num_key_value_heads} ffn {c.intermediate_size} "
                  f"bias a{int(c.attention_bias)} m{int(r['mlp_bias'])}  logits max err {err:.2e}  {'OK' if r['ok'] else 'FAIL'}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
