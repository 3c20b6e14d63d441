#!/usr/bin/env python3
"""Renders the SmolLM2 depth-pruning table (markdown, stdout) from bench/depth/smollm2/:
<criterion>-<pct>.pruning.json (lop prune records), <criterion>-<pct>.log (wall time) and ppl.jsonl
(WikiText-2 perplexities from bench/tools/wikitext_ppl.c; missing rows show "pending").
    python3 bench/depth/make_table.py > /tmp/table.md"""
import json
import math
from pathlib import Path

REC = Path(__file__).resolve().parent / "smollm2"
ppl = {}
if (REC / "ppl.jsonl").exists():
    for line in (REC / "ppl.jsonl").read_text().splitlines():
        r = json.loads(line)
        ppl[Path(r["model"]).name] = r


def wall(crit, pct):
    for line in (REC / f"{crit}-{pct}.log").read_text().splitlines():
        if line.startswith("wall_seconds"):
            return float(line.split()[1])
    return math.nan


orig = ppl.get("SmolLM2-135M-Instruct.Q4_1.gguf")
print("| criterion | target | blocks removed (input numbering) | layers | params | removed | WikiText-2 PPL | "
      "scoring s | wall s |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
print(f"| original | – | – | 30 | 134,515,008 | 0 % | {orig['ppl']:.2f} | | |" if orig else
      "| original | – | – | 30 | 134,515,008 | 0 % | pending | | |")
for crit in ("magnitude", "taylor", "ppl", "bi"):
    for pct in (20, 35):
        f = REC / f"{crit}-{pct}.pruning.json"
        if not f.exists():
            continue
        j = json.loads(f.read_text())
        p = j["params"]
        r = ppl.get(f"{crit}-{pct}")
        print(f"| {crit}+ | {pct} % | {' '.join(map(str, j['removed']))} | {len(j['kept_layers'])} | "
              f"{p['after']:,} | {100 * p['removed_fraction']:.1f} % | {r['ppl']:.2f} |" if r else
              f"| {crit}+ | {pct} % | {' '.join(map(str, j['removed']))} | {len(j['kept_layers'])} | "
              f"{p['after']:,} | {100 * p['removed_fraction']:.1f} % | pending |", end="")
        print(f" {j['timing']['scoring_seconds']:.1f} | {wall(crit, pct):.1f} |")
