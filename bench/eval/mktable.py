#!/usr/bin/env python3
"""Markdown rows of the results table from `lop eval --json` files.

Usage: bench/eval/mktable.py "ROW NAME=a.json[,b.json...]" ...
Each row merges its JSON files (perplexity entries by ctx, zero-shot tasks by name); a task absent
from every file of a row is shown as "—", a task reported missing as "missing". Scores are the
paper's metric per task (acc: BoolQ, PIQA, WinoGrande, ARC-e; acc_norm: HellaSwag, ARC-c, OBQA)
in percent; the average is over the seven tasks only when all seven are present. A perplexity
computed on part of the text (--ppl-windows) says how many windows.
"""
import json
import sys

TASKS = ["boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]
HEAD = ("| model | WikiText-2 PPL ctx 128 | ctx 2048 | BoolQ | PIQA | HellaSwag* | WinoGrande | ARC-e | ARC-c "
        "| OBQA | average | items per task | eval time (s) | device |")


def row(spec):
    name, files = spec.split("=", 1)
    ppl, tasks, secs, devices, limits = {}, {}, 0.0, set(), set()
    for f in files.split(","):
        d = json.load(open(f))
        secs += d.get("seconds", 0)
        n = d.get("threads")  # CPU runs only
        threads = f", {n} thread{'s' * (n != 1)}" if n else ""
        devices.add(f"{d.get('device')} ({d.get('device_name')}{threads})")
        for p in d.get("perplexity", []):
            ppl[p["ctx"]] = p
        zs = d.get("zeroshot", {})
        if zs.get("tasks"):
            limits.add(zs.get("limit", 0))
        for t in zs.get("tasks", []):
            tasks[t["task"]] = t
    cells = [name]
    for ctx in (128, 2048):
        p = ppl.get(ctx)
        # "(N windows)" when --ppl-windows left more than one window's worth of text out
        part = f" ({p['windows']} windows)" if p and p["tokens_dropped"] >= ctx else ""
        cells.append(f"{p['ppl']:.2f}{part}" if p else "—")
    scores = []
    for t in TASKS:
        x = tasks.get(t)
        if x is None:
            cells.append("—")
        elif x["status"] != "ok":
            cells.append("missing")
        else:
            scores.append(x["score"])
            cells.append(f"{100 * x['score']:.1f}")
    cells.append(f"{100 * sum(scores) / len(scores):.1f}" if len(scores) == len(TASKS) else "—")
    cells.append("all" if limits == {0} else ",".join(str(x) for x in sorted(limits)) or "—")
    cells.append(f"{secs:.0f}")
    cells.append("; ".join(sorted(devices)))
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print(HEAD)
    print("|" + "|".join(["---"] * (HEAD.count("|") - 1)) + "|")
    for spec in sys.argv[1:]:
        print(row(spec))
