#!/usr/bin/env python3
"""HF transformers anchor for the CUDA benchmark (same call as lop's numbers): random-init
LlamaForCausalLM with LLaMA-7B's shape in fp16 on the GPU, generate() at batch B with the paper's
protocol (12-token prompt repeated over the batch, exactly L new tokens: min_new_tokens =
max_new_tokens = L, top-k 50 / top-p 0.95 sampling), 1 warm-up + R timed runs, median.
Usage: hf_anchor.py [B] [L] [R]   -> prints "hf_7b_b{B}_L{L}_tok_per_s X" """
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

B = int(sys.argv[1]) if len(sys.argv) > 1 else 1
L = int(sys.argv[2]) if len(sys.argv) > 2 else 128
R = int(sys.argv[3]) if len(sys.argv) > 3 else 2
cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6)
torch.set_default_dtype(torch.float16)
t0 = time.time()
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg)
model.eval()
print(f"hf: model ready in {time.time() - t0:.1f} s, {torch.cuda.get_device_name(0)}, transformers "
      f"{__import__('transformers').__version__}, torch {torch.__version__}", flush=True)
prompt = torch.tensor([[1, 450, 4955, 310, 278, 4223, 4086, 16410, 411, 278, 18647, 310]] * B, device="cuda")
kw = dict(do_sample=True, top_k=50, top_p=0.95, pad_token_id=0)
with torch.no_grad():
    model.generate(prompt, min_new_tokens=8, max_new_tokens=8, **kw)
    times = []
    for _ in range(R):
        torch.cuda.synchronize()
        t = time.time()
        out = model.generate(prompt, min_new_tokens=L, max_new_tokens=L, **kw)
        torch.cuda.synchronize()
        times.append(time.time() - t)
        assert out.shape[1] == 12 + L
times.sort()
med = times[len(times) // 2]
print(f"hf_7b_b{B}_L{L}_seconds {med:.3f}")
print(f"hf_7b_b{B}_L{L}_tok_per_s {B * L / med:.2f}")
