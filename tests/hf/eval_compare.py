#!/usr/bin/env python3
"""HF transformers vs lop: the same log-likelihoods for zero-shot items and perplexity windows.

lop side: `lop eval MODEL --ppl FILE --ctx 128,2048 --ppl-windows W --tasks all --limit N --dump
--json LOP.json` (per-item log-likelihoods and per-window NLLs in the JSON).
HF side (this script, independent of lop's C code): the tasks' original files parsed here, lm-eval's
templates and preprocessing written out in Python (as in the lm-eval task YAMLs / utils), lm-eval's
TemplateLM._encode_pair tokenisation with the HF tokenizer (add_special_tokens=False; for SmolLM2 the
real pre-tokenizer, Digits + ByteLevel, which transformers' GGUF converter drops), one forward
per item (its choices as one right-padded batch; no cache sharing), float32 log_softmax as lm-eval's
HFLM computes it; perplexity windows built from the HF tokenisation of the whole text.

Compares item by item: token counts, log-likelihood of every choice (max abs difference), the
predictions for acc and acc_norm (each disagreement listed with both sides' scores); and each
perplexity window's NLL sum. Every difference is also given against a float64 log_softmax of the
same HF logits: float32 log_softmax itself is off by ~1e-5 nats per token (always the same sign),
which is most of what separates HF's float32 numbers from lop's (exp in float, sum and log in
double). Writes a JSON report; tests/hf/README.md records a run.

Run (CPU is enough for SmolLM2-135M):
  PYTHONPATH=/tmp/pydeps /opt/hfenv/bin/python tests/hf/eval_compare.py \
      --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --lop LOP.json --data ../shared/data \
      --out tests/hf/eval_compare_smollm2.json
(`accelerate` must be importable for from_pretrained(gguf_file=); without it the script loads the
GGUF through transformers' own load_gguf_checkpoint, which is what from_pretrained runs.)
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


# ---- tasks: the original files, lm-eval's templates ------------------------------------------------
def jsonl(path, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if len(out) == limit:
                    break
    return out


def hs_preprocess(text):  # lm_eval/tasks/hellaswag/utils.py
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def load_task(name, d, limit):
    """-> list of (contexts per choice, continuations per choice, choice texts for acc_norm, gold)"""
    z = os.path.join(d, "zeroshot")
    items = []
    if name == "piqa":
        docs = jsonl(os.path.join(z, "piqa/valid.jsonl"), limit)
        labels = open(os.path.join(z, "piqa/valid-labels.lst")).read().split()
        for doc, lab in zip(docs, labels):
            ctx = f"Question: {doc['goal']}\nAnswer:"
            ch = [doc["sol1"], doc["sol2"]]
            items.append(([ctx] * 2, [" " + c for c in ch], ch, int(lab)))
    elif name in ("arc_easy", "arc_challenge", "openbookqa"):
        rel = {"arc_easy": "arc_easy/ARC-Easy-Test.jsonl", "arc_challenge": "arc_challenge/ARC-Challenge-Test.jsonl",
               "openbookqa": "openbookqa/test.jsonl"}[name]
        for doc in jsonl(os.path.join(z, rel), limit):
            q = doc["question"]
            ch = [c["text"] for c in q["choices"]]
            labels = [c["label"] for c in q["choices"]]
            if name == "openbookqa":
                ctx, gold = q["stem"], labels.index(doc["answerKey"].lstrip())
            else:
                ctx, gold = f"Question: {q['stem']}\nAnswer:", labels.index(doc["answerKey"])
            items.append(([ctx] * len(ch), [" " + c for c in ch], ch, gold))
    elif name == "boolq":
        for doc in jsonl(os.path.join(z, "boolq/dev.jsonl"), limit):
            ctx = f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:"
            items.append(([ctx] * 2, [" no", " yes"], ["no", "yes"], 1 if doc["answer"] else 0))
    elif name == "winogrande":
        for doc in jsonl(os.path.join(z, "winogrande/dev.jsonl"), limit):
            idx = doc["sentence"].index("_")
            ctxs = [doc["sentence"][:idx] + o for o in (doc["option1"], doc["option2"])]
            target = doc["sentence"][idx + 1:].strip()
            items.append((ctxs, [" " + target] * 2, ctxs, {"1": 0, "2": 1}[doc["answer"]]))
    elif name == "hellaswag":
        orig = os.path.join(z, "hellaswag/hellaswag_val.jsonl")
        if os.path.exists(orig):
            for doc in jsonl(orig, limit):
                ctx = hs_preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize())
                ch = [hs_preprocess(e) for e in doc["endings"]]
                items.append(([ctx] * 4, [" " + c for c in ch], ch, int(doc["label"])))
        else:  # the derived llama.cpp text: 6 lines per item
            lines = open(os.path.join(z, "hellaswag/hellaswag_val_full.txt"), encoding="utf-8").read().split("\n")
            for k in range(0, min(len(lines) - 5, 6 * limit), 6):
                ctx = hs_preprocess(lines[k])
                ch = [hs_preprocess(e) for e in lines[k + 2:k + 6]]
                items.append(([ctx] * 4, [" " + c for c in ch], ch, int(lines[k + 1])))
    return items


# ---- lm-eval's loglikelihood --------------------------------------------------------------------
def encode_pair(tok, context, continuation):  # TemplateLM._encode_pair, causal LM
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


@torch.no_grad()
def loglikelihoods(model, pairs, max_len):
    """lm-eval's (ll, is_greedy) for each (ctx_ids, cont_ids): input (ctx + cont)[-(max_len+1):][:-1];
    the choices of one item run as one right-padded batch (causal attention: padding after a
    sequence cannot change its logits). Also the ll from a float64 log_softmax of the same logits
    (a reference for the rounding of float32 log_softmax itself; predictions use lm-eval's float32)."""
    inps = [(c + k)[-(max_len + 1):][:-1] for c, k in pairs]
    L = max(len(i) for i in inps)
    batch = torch.tensor([i + [0] * (L - len(i)) for i in inps])
    logits = model(batch).logits.float()
    out = []
    for b, ((c, k), inp) in enumerate(zip(pairs, inps)):
        rows = logits[b, len(inp) - len(k):len(inp)]
        lp = F.log_softmax(rows, dim=-1)
        tgt = torch.tensor(k)
        lp64 = F.log_softmax(rows.double(), dim=-1).gather(1, tgt[:, None])[:, 0].sum().item()
        out.append((lp.gather(1, tgt[:, None])[:, 0].double().sum().item(), bool((lp.argmax(dim=-1) == tgt).all()), lp64))
    return out


# ---- model --------------------------------------------------------------------------------------
def gguf_pretokenizer(gguf):
    from gguf import GGUFReader
    field = GGUFReader(gguf).fields.get("tokenizer.ggml.pre")
    return bytes(field.parts[field.data[0]]).decode() if field else None


def load(gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    pre = gguf_pretokenizer(gguf)
    if pre == "smollm":
        # transformers' GGUF converter keeps ByteLevel alone; the real SmolLM2 tokenizer.json (and
        # llama.cpp's "smollm") splits digits first — without this, numbers after several spaces
        # tokenise differently (tests/fixtures/tok/make_tok_fixtures.py documents the same).
        from tokenizers import pre_tokenizers
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    try:
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
        how = "from_pretrained(gguf_file=)"
    except ValueError as e:
        if "accelerate" not in str(e):
            raise
        from transformers import AutoConfig, LlamaForCausalLM
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
        cfg = AutoConfig.from_pretrained(d, gguf_file=f)
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
        sd = load_gguf_checkpoint(gguf, return_tensors=True, model_to_load=model)["tensors"]
        sd = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in sd.items()}
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
        model.load_state_dict(sd, strict=True)
        how = "load_gguf_checkpoint"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return tok, model.eval(), how + f"; GGUF pre-tokenizer '{pre}'" + (" restored as Digits+ByteLevel" if pre == "smollm" else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--lop", required=True, help="lop eval --dump --json output")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lop = json.load(open(a.lop))
    tok, model, how = load(a.gguf)
    t0 = time.time()
    report = {"schema": "lop-hf-eval-compare/1", "model": os.path.basename(a.gguf), "loader": how,
              "transformers": __import__("transformers").__version__, "torch": torch.__version__,
              "hf_compute": "float32 CPU, eager attention, one sequence per forward, F.log_softmax in float32",
              "lop_json": {k: lop.get(k) for k in ("model", "device", "device_name", "started")}, "tasks": [],
              "perplexity": []}
    zs = lop.get("zeroshot", {})
    max_len = zs.get("max_len", 2048)
    for t in zs.get("tasks", []):
        if t["status"] != "ok":
            report["tasks"].append({"task": t["task"], "status": t["status"]})
            continue
        lop_items = t["items_detail"]
        items = load_task(t["task"], a.data, len(lop_items))
        assert len(items) == len(lop_items), (t["task"], len(items), len(lop_items))
        max_diff, worst, tok_mismatch, pred_diff, norm_diff, greedy_diff, max_tok = 0.0, None, 0, 0, 0, 0, 0.0
        n_choices, disagreements, sum_diff, max_diff64, sum_signed = 0, [], 0.0, 0.0, 0.0
        for i, ((ctxs, conts, choices, gold), li) in enumerate(zip(items, lop_items)):
            assert gold == li["gold"], (t["task"], i)
            pairs = []
            for j, (c, k) in enumerate(zip(ctxs, conts)):
                ce, ke = encode_pair(tok, c, k)
                if len(ce) == 0:
                    ce = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
                if len(ce) != li["n_ctx"][j] or len(ke) != li["n_cont"][j]:
                    tok_mismatch += 1
                pairs.append((ce, ke))
            res = loglikelihoods(model, pairs, max_len)
            lls = [r[0] for r in res]
            for j, (ll, greedy, ll64) in enumerate(res):
                d = abs(ll - li["ll"][j])
                n_choices += 1
                sum_diff += d
                max_diff64 = max(max_diff64, abs(ll64 - li["ll"][j]))
                sum_signed += li["ll"][j] - ll
                max_tok = max(max_tok, d / li["n_cont"][j])
                greedy_diff += greedy != bool(li["greedy"][j])
                if d > max_diff:
                    max_diff, worst = d, {"item": i, "line": li["line"], "choice": j, "hf": ll, "lop": li["ll"][j]}
            lens = np.array([float(len(c)) for c in choices])
            pred, pred_norm = int(np.argmax(lls)), int(np.argmax(np.array(lls) / lens))
            pred_diff += pred != li["pred"]
            norm_diff += pred_norm != li["pred_norm"]
            if pred != li["pred"] or pred_norm != li["pred_norm"]:
                # what the two disagree on: each side's scores, so a near-tie shows as such
                lop_lls = np.array(li["ll"], dtype=np.float64)
                disagreements.append({"item": i, "line": li["line"], "metric": ("acc " if pred != li["pred"] else "") +
                                      ("acc_norm" if pred_norm != li["pred_norm"] else ""),
                                      "hf_pred": pred, "lop_pred": li["pred"], "hf_pred_norm": pred_norm,
                                      "lop_pred_norm": li["pred_norm"], "hf_ll": lls, "lop_ll": li["ll"],
                                      "hf_ll_per_char": (np.array(lls) / lens).tolist(),
                                      "lop_ll_per_char": (lop_lls / lens).tolist()})
        n = len(items)
        row = {"task": t["task"], "status": "ok", "items": n, "choices_scored": n_choices,
               "token_count_mismatches": tok_mismatch, "max_abs_ll_diff": max_diff,
               "mean_abs_ll_diff": sum_diff / max(n_choices, 1), "mean_ll_diff_lop_minus_hf": sum_signed / max(n_choices, 1),
               "max_abs_ll_diff_vs_f64_log_softmax": max_diff64, "max_abs_ll_diff_per_token": max_tok, "worst": worst,
               "pred_disagreements": pred_diff, "is_greedy_disagreements": greedy_diff, "pred_norm_disagreements": norm_diff,
               "lop_acc": t["acc"], "lop_acc_norm": t["acc_norm"], "disagreements": disagreements}
        report["tasks"].append(row)
        print(f"{t['task']:14s} items {n:4d}  max|dLL| {max_diff:.2e} (vs f64 log_softmax {max_diff64:.2e})  token-count mismatches {tok_mismatch}  "
              f"pred diffs {pred_diff}/{norm_diff}  is_greedy diffs {greedy_diff}", flush=True)
    # perplexity windows: HF tokenisation of the whole text, same layout
    for p in lop.get("perplexity", []):
        text = open(p["file"], encoding="utf-8").read()  # text mode: CRLF -> LF, as lop reads it
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ctx, nll = p["ctx"], p.get("window_nll", [])
        seq = ([tok.bos_token_id] if p["bos"] == "first" else []) + ids
        diffs, hf_nll, diffs64 = [], [], []
        for k, lop_w in enumerate(nll):
            w = seq[k * ctx:(k + 1) * ctx] if p["bos"] != "each" else [tok.bos_token_id] + ids[k * ctx:(k + 1) * ctx]
            with torch.no_grad():
                lg = model(torch.tensor([w])).logits[0].float()
            hf_w = F.cross_entropy(lg[:-1], torch.tensor(w[1:]), reduction="sum").item()
            hf_w64 = sum(F.cross_entropy(lg[r:min(r + 256, len(w) - 1)].double(), torch.tensor(w[r + 1:r + 257]),
                                         reduction="sum").item()
                         for r in range(0, len(w) - 1, 256))  # float64 log-softmax, in row chunks
            diffs64.append(abs(hf_w64 - lop_w))
            diffs.append(abs(hf_w - lop_w))
            hf_nll.append(hf_w)
        row = {"file": os.path.basename(p["file"]), "ctx": ctx, "bos": p["bos"], "hf_text_tokens": len(ids),
               "lop_text_tokens": p["text_tokens"], "windows_compared": len(nll),
               "max_abs_window_nll_diff": max(diffs) if diffs else None,
               "max_abs_nll_diff_per_token": max(d / (ctx - (p["bos"] != "each")) for d in diffs) if diffs else None,
               "max_abs_window_nll_diff_vs_f64_log_softmax": max(diffs64) if diffs64 else None,
               "hf_window_nll": hf_nll, "lop_window_nll": nll, "abs_window_nll_diff": diffs,
               "abs_window_nll_diff_vs_f64_log_softmax": diffs64}
        report["perplexity"].append(row)
        print(f"ppl ctx {ctx}: tokens hf {len(ids)} lop {p['text_tokens']}, {len(nll)} windows, "
              f"max|dNLL| per window {row['max_abs_window_nll_diff']} (vs f64 log_softmax {row['max_abs_window_nll_diff_vs_f64_log_softmax']})", flush=True)
    report["seconds"] = time.time() - t0
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    sys.exit(main())
