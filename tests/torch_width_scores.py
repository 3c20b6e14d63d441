#!/usr/bin/env python3
"""PyTorch re-implementation of lop's Wanda-sp and FLAP width-pruning scores, compared with lop's on SmolLM2.

    /opt/hfenv/bin/python tests/torch_width_scores.py WANDA_RUN FLAP_RUN [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]
                                                     [--json bench/width/torch_agreement.json]

WANDA_RUN / FLAP_RUN are `lop prune --width P% --method wanda-sp|flap` outputs (GQA mode query, round 1);
their pruning.json holds the calibration ids, lop's scores and the kept heads / channels.

The model is SmolLM2-135M-Instruct from the GGUF (stock LlamaForCausalLM, eager attention, float64).
Inputs of o_proj and down_proj are captured with forward hooks on the decoder layers run one by one.
  wanda-sp  score_j = mean_i |W_ij| * ||X_j||_2 ; head = sum over its 64 channels. Layer by layer: the
            layer is scored unpruned, the kept counts per layer are lop's (they follow from the shapes
            alone), the top heads of every KV group and the top channels are kept, the removed o_proj /
            down_proj columns are zeroed (exactly removal) and the layer re-run for the next input.
  flap      f_j = var_j (unbiased, over all calibration tokens) * sum_i W_ij^2 on the unpruned model;
            head = sum_j f_j^2 ; z-scores per layer and module type; one global threshold: lowest z
            first, every unit whose parameter cost is below twice what is left to remove; kept query
            heads per group = round((heads kept) / kv groups), FFN width = channels kept.
Prints, per method, the number of layers whose kept head set and channel set equal lop's, the largest
relative score difference, and writes the summary as JSON.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fixtures"))
sys.dont_write_bytecode = True
import make_hf_fixtures as mhf  # noqa: E402


def run_layer(layer, h, pe, mask):
    out = layer(h, attention_mask=mask, position_embeddings=pe)
    return out[0] if isinstance(out, tuple) else out


def capture(layer, h, pe, mask):
    got = {}
    hooks = [layer.self_attn.o_proj.register_forward_hook(lambda m, i, o: got.__setitem__("o", i[0].detach())),
             layer.mlp.down_proj.register_forward_hook(lambda m, i, o: got.__setitem__("d", i[0].detach()))]
    out = run_layer(layer, h, pe, mask)
    for k in hooks:
        k.remove()
    return out, got["o"].reshape(-1, got["o"].shape[-1]), got["d"].reshape(-1, got["d"].shape[-1])


def top(scores, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


def heads_kept(hs, n_kv, per_group):
    qpg = len(hs) // n_kv
    return sorted(g * qpg + i for g in range(n_kv) for i in top(hs[g * qpg:(g + 1) * qpg], per_group))


def rel(a, b):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float(((a - b).abs() / b.abs().clamp_min(1e-30)).max())


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wanda_run")
    ap.add_argument("flap_run")
    ap.add_argument("--gguf", default=str(HERE.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    _, model, how = mhf.load_smollm2(str(Path(a.gguf).parent))
    model = model.double()
    cfg = model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    nkv = cfg.num_key_value_heads
    D = cfg.hidden_size
    reps = {m: json.loads((Path(r) / "pruning.json").read_text()) for m, r in (("wanda-sp", a.wanda_run),
                                                                                ("flap", a.flap_run))}
    result = {"script": "tests/torch_width_scores.py", "torch": torch.__version__, "model_loader": how}
    with_ids = [r for r in reps.values() if "ids" in r["calibration"]["samples"][0]]
    for meth, rep in reps.items():
        # a run without ids (older lop) used the same windows when its offsets match another run's
        src = rep if "ids" in rep["calibration"]["samples"][0] else with_ids[0]
        assert [s["token_offset"] for s in src["calibration"]["samples"]] == \
            [s["token_offset"] for s in rep["calibration"]["samples"]], "different calibration windows"
        ids = torch.tensor([s["ids"] for s in src["calibration"]["samples"]])
        T = ids.shape[1]
        h = model.model.embed_tokens(ids)
        pos = torch.arange(T).unsqueeze(0).expand(ids.shape[0], -1)
        pe = model.model.rotary_emb(h, pos)
        mask = torch.full((T, T), float("-inf"), dtype=h.dtype).triu(1)[None, None].expand(ids.shape[0], 1, T, T)
        layers = model.model.layers
        lop_layers = rep["layers"]
        saved = [(l.self_attn.o_proj.weight.clone(), l.mlp.down_proj.weight.clone()) for l in layers]
        hsc, csc, means = [], [], []
        same_h = same_c = 0
        kept_h, kept_c = [], []
        for n, layer in enumerate(layers):
            out, xo, xd = capture(layer, h, pe, mask)
            Wo, Wd = layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight
            if meth == "wanda-sp":
                so = (Wo.abs().mean(0) * xo.norm(dim=0))
                sd = (Wd.abs().mean(0) * xd.norm(dim=0))
                hs = so.reshape(-1, hd).sum(1).tolist()
            else:
                so = xo.var(0, unbiased=True) * Wo.pow(2).sum(0)
                sd = xd.var(0, unbiased=True) * Wd.pow(2).sum(0)
                hs = so.pow(2).reshape(-1, hd).sum(1).tolist()
                means.append((xo.mean(0), xd.mean(0)))
            hsc.append(hs)
            csc.append(sd.tolist())
            if meth == "wanda-sp":
                kh = heads_kept(hs, nkv, lop_layers[n]["n_heads"] // nkv)
                kc = top(csc[-1], lop_layers[n]["ffn_dim"])
                kept_h.append(kh)
                kept_c.append(kc)
                mo = torch.zeros(len(hs) * hd, dtype=torch.bool)
                for i in kh:
                    mo[i * hd:(i + 1) * hd] = True
                md = torch.zeros(len(sd), dtype=torch.bool)
                md[kc] = True
                layer.self_attn.o_proj.weight[:, ~mo] = 0
                layer.mlp.down_proj.weight[:, ~md] = 0
                out = run_layer(layer, h, pe, mask)
            h = out
        for layer, (wo, wd) in zip(layers, saved):
            layer.self_attn.o_proj.weight.copy_(wo)
            layer.mlp.down_proj.weight.copy_(wd)
        if meth == "flap":
            units = []
            for n in range(len(layers)):
                z = torch.tensor(hsc[n], dtype=torch.float64)
                z = (z - z.mean()) / z.std()
                units += [(float(v), 2 * hd * D, n, 0) for v in z]
                z = torch.tensor(csc[n], dtype=torch.float64)
                z = (z - z.mean()) / z.std()
                units += [(float(v), 3 * D, n, 1) for v in z]
            units.sort(key=lambda u: (u[0], -u[2], u[3]))
            left = rep["target"]["params_to_remove"]
            rm = [[0, 0] for _ in layers]
            for z, cost, n, kind in units:
                if left <= 0:
                    break
                if cost >= 2 * left:
                    continue
                left -= cost
                rm[n][kind] += 1
            for n in range(len(layers)):
                nh = len(hsc[n])
                per = min(nh // nkv, max(1, round((nh - rm[n][0]) / nkv)))
                kept_h.append(heads_kept(hsc[n], nkv, per))
                kept_c.append(top(csc[n], len(csc[n]) - rm[n][1]))
        rh = max(rel(lop_layers[n]["head_scores"], hsc[n]) for n in range(len(layers)))
        rc = max(rel(lop_layers[n]["channel_scores"], csc[n]) for n in range(len(layers)))
        for n in range(len(layers)):
            same_h += kept_h[n] == lop_layers[n]["kept_heads"]
            same_c += kept_c[n] == lop_layers[n]["kept_channels"]
        diff_c = sum(len(set(kept_c[n]) ^ set(lop_layers[n]["kept_channels"])) for n in range(len(layers)))
        r = {"layers": len(layers), "layers_same_heads": same_h, "layers_same_channels": same_c,
             "channels_differing_total": diff_c, "max_rel_head_score_diff": rh, "max_rel_channel_score_diff": rc}
        result[meth] = r
        print(f"{meth}: heads identical in {same_h}/{len(layers)} layers, channels identical in "
              f"{same_c}/{len(layers)} layers ({diff_c} channels differ); max rel. score diff heads {rh:.2e}, "
              f"channels {rc:.2e}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
