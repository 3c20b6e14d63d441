#!/usr/bin/env python3
"""Renders the SmolLM2 width-pruning table (markdown) from bench/width/smollm2/{ppl.jsonl,*.log}.
    python3 bench/width/make_table.py (the table in README.md)"""
import json
import re
from pathlib import Path

REC = Path(__file__).resolve().parent / "smollm2"
rows = {}
for line in (REC / "ppl.jsonl").read_text().splitlines():
    j = json.loads(line)
    rows[Path(j["model"]).name] = j
base = next(v for k, v in rows.items() if k.endswith(".gguf"))
print(f"WikiText-2 test, seq 128, BOS per window, first {base['windows']} windows ({base['scored_tokens']} predicted "
      f"tokens); original SmolLM2-135M-Instruct (Q4_1 dequantised): PPL {base['ppl']:.2f}, {base['params']:,} parameters.\n")
print("| method | target | params after | removed | shapes (heads/kv, FFN) | PPL | prune time (CPU, s) |")
print("|---|---|---|---|---|---|---|")
for meth in ("magnitude", "wanda-sp", "flap", "llm-pruner"):
    for pct in (20, 35):
        name = f"{meth}-{pct}"
        if name not in rows:
            continue
        r = rows[name]
        log = (REC / f"{name}.log").read_text()
        shapes = re.findall(r"^\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)$", log, re.M)
        hs = sorted({f"{a}/{b}" for a, b, _ in shapes})
        fs = sorted({int(c) for _, _, c in shapes})
        shape = f"{','.join(hs)}; {fs[0]}" + (f"–{fs[-1]} (per layer)" if len(fs) > 1 else "")
        wall = re.search(r"wall_seconds ([\d.]+)", log)
        print(f"| {meth} | {pct} % | {r['params']:,} | {100 * (1 - r['params'] / base['params']):.1f} % | {shape} | "
              f"{r['ppl']:.2f} | {wall.group(1) if wall else '-'} |")
