#!/usr/bin/env python3
"""{"original": [], "<criterion>-<pct>": [removed blocks], ...} from bench/depth/smollm2/*.pruning.json,
the --runs input of bench/depth/hf_wikitext_ppl.py.   python3 bench/depth/make_runs.py > runs.json"""
import json
from pathlib import Path

rec = Path(__file__).resolve().parent / "smollm2"
runs = {"original": []}
for crit in ("magnitude", "taylor", "ppl", "bi"):
    for pct in (20, 35):
        f = rec / f"{crit}-{pct}.pruning.json"
        if f.exists():
            runs[f"{crit}-{pct}"] = json.loads(f.read_text())["removed"]
print(json.dumps(runs))
