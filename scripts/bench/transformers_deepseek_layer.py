#!/usr/bin/env python3
"""One DeepSeek-V2 decoder layer (MLA attention + MoE) with Hugging Face transformers on the CPU,
beside the `deepseek_layer` rows of `ssm-mla bench`.

Same cases as the suite: one `DeepseekV2DecoderLayer` with random weights (seeded, std 0.02 as
the model's own init) at the shapes of DeepSeek-V2-Lite: hidden 2048, 16 heads, no q LoRA,
kv_lora_rank 512, qk_nope 128 + qk_rope 64, v 128; 64 routed experts of 1408, top-6 greedy
softmax routing without renormalisation, scale 1.0, plus 2 shared experts; first_k_dense_replace
0, so layer 0 is an MoE layer; YaRN rope (factor 40 over 4096, beta 32/1, mscale 0.707 on both).
f32, or bf16 with --dtype bf16 (the router weight stays f32, as transformers keeps it). Eager
attention. Cases:

- prefill of one sequence of L = 128 and 512 new tokens from an empty cache (tokens/s), and
  L = 4096 with --long;
- ragged prefill of two sequences of 96 and 32 tokens: transformers has no ragged batch, so the
  two run one after the other, each from an empty cache, and the row is the sum of both;
- decode of one new token per sequence after a context of 1024 and 4096 tokens, Bt = 1 and 8
  (per-step latency), and Bt = 1 after 32768 with --ctx-32k. The context goes into the layer's
  `DynamicCache` by an untimed prefill, in chunks of --fill-chunk tokens (one 4096-token chunk
  at Bt = 8 would need a 8.6 GB score matrix); after each timed repeat the cache is cropped back
  to the context.

Only the layer's forward is timed. The causal mask (`create_causal_mask`) and the rotary table
(`DeepseekV2RotaryEmbedding`) are built before each timed call, as `DeepseekV2Model` builds them
once per forward for all its layers. Warm-up run first, then the median of the repeats; a
markdown table at the end.

How to run (CI never runs it; it needs a Python environment with torch and transformers):

    python -m venv venv && venv/bin/pip install torch transformers
    venv/bin/python scripts/bench/transformers_deepseek_layer.py            # all cases
    venv/bin/python scripts/bench/transformers_deepseek_layer.py --quick    # 2 cases only
    venv/bin/python scripts/bench/transformers_deepseek_layer.py --skip-4k  # no 4096 context
    venv/bin/python scripts/bench/transformers_deepseek_layer.py --long     # + prefill 4096
    venv/bin/python scripts/bench/transformers_deepseek_layer.py --ctx-32k  # + decode after 32K
    venv/bin/python scripts/bench/transformers_deepseek_layer.py --threads 8 --repeats 7
    venv/bin/python scripts/bench/transformers_deepseek_layer.py --tiny     # a smoke test

Checked against transformers 5.25: the YaRN settings go in `rope_parameters` (with `rope_type`
and `rope_theta`); the rotary module returns complex `freqs_cis`, passed as
`position_embeddings`; the cache argument is `cache` (formerly `past_key_values`), and MLA caches
the compressed latent (the normalised 512-wide kv latent and the roped 64-wide key) in a
`DynamicCache`, re-expanding it through `kv_b_proj` at every forward. A standalone layer is not
set up by `PreTrainedModel`, so the script sets the experts implementation itself: grouped_mm,
which `DeepseekV2Model` picks by default (--experts for the others).
"""

import argparse
import statistics
import time

import torch
from torch import nn
from transformers import DeepseekV2Config, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.models.deepseek_v2.modeling_deepseek_v2 import (
    DeepseekV2DecoderLayer,
    DeepseekV2Experts,
    DeepseekV2RotaryEmbedding,
    DeepseekV2TopkRouter,
)

# Case lengths; --tiny divides them all by TINY_DIV.
PREFILL = [128, 512]
LONG_PREFILL = 4096
LONG_CONTEXT = 32768
RAGGED = (96, 32)
CONTEXTS = [1024, 4096]
BATCHES = [1, 8]
TINY_DIV = 8


def build(dtype, experts, tiny=False):
    dims = dict(
        hidden_size=2048,
        num_attention_heads=16,
        kv_lora_rank=512,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        n_routed_experts=64,
        num_experts_per_tok=6,
        n_shared_experts=2,
        moe_intermediate_size=1408,
        intermediate_size=10944,
    )
    if tiny:
        # The same code paths at toy sizes, to check the script itself in seconds.
        dims = dict(
            hidden_size=64,
            num_attention_heads=4,
            kv_lora_rank=16,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=8,
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_shared_experts=2,
            moe_intermediate_size=32,
            intermediate_size=128,
        )
    cfg = DeepseekV2Config(
        vocab_size=102400,
        num_hidden_layers=1,
        num_key_value_heads=dims["num_attention_heads"],
        q_lora_rank=None,
        topk_method="greedy",
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        norm_topk_prob=False,
        first_k_dense_replace=0,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        max_position_embeddings=163840,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
        },
        attention_bias=False,
        initializer_range=0.02,
        **dims,
    )
    # What `PreTrainedModel.__init__` would settle for a whole model.
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = experts
    torch.manual_seed(0)
    layer = DeepseekV2DecoderLayer(cfg, layer_idx=0)
    assert isinstance(layer.mlp.experts, DeepseekV2Experts), "layer 0 should be an MoE layer"
    # `DeepseekV2PreTrainedModel._init_weights`: normal(0, 0.02) for every linear, the router
    # and the stacked experts (which `__init__` leaves uninitialised); RMSNorm weights stay 1.
    std = cfg.initializer_range
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, DeepseekV2TopkRouter):
                m.weight.normal_(0.0, std)
            elif isinstance(m, DeepseekV2Experts):
                m.gate_up_proj.normal_(0.0, std)
                m.down_proj.normal_(0.0, std)
    layer = layer.to(dtype).eval()
    # `_keep_in_fp32_modules_strict = ["gate.weight"]`: the router stays f32 in a bf16 model.
    layer.mlp.gate.weight.data = layer.mlp.gate.weight.data.float()
    rotary = DeepseekV2RotaryEmbedding(cfg).eval()
    return cfg, layer, rotary


def layer_inputs(cfg, rotary, hidden, cache):
    """Position ids, causal mask and rotary table for `hidden` after what `cache` holds, built
    as `DeepseekV2Model.forward` builds them."""
    past = cache.get_seq_length()
    position_ids = (torch.arange(hidden.shape[1]) + past).unsqueeze(0)
    mask = create_causal_mask(
        config=cfg,
        inputs_embeds=hidden,
        attention_mask=None,
        cache=cache,
        position_ids=position_ids,
    )
    return dict(
        attention_mask=mask,
        position_ids=position_ids,
        position_embeddings=rotary(hidden, position_ids),
    )


def forward(layer, cfg, rotary, hidden, cache):
    """One untimed layer call that writes `hidden` into `cache` and returns the output."""
    inputs = layer_inputs(cfg, rotary, hidden, cache)
    return layer(hidden, cache=cache, use_cache=True, **inputs)


def fill(layer, cfg, rotary, hidden, cache, chunk):
    """Prefill `hidden` into `cache`, `chunk` tokens at a time."""
    for start in range(0, hidden.shape[1], chunk):
        forward(layer, cfg, rotary, hidden[:, start:start + chunk], cache)


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def prefill_case(layer, cfg, rotary, lengths, dtype, repeats):
    """Time the sequences of `lengths` run one after the other, each from an empty cache."""
    runs = []
    for length in lengths:
        hidden = torch.randn(1, length, cfg.hidden_size, dtype=dtype)
        # The mask and rotary table of an empty cache: the same for every run.
        runs.append((hidden, layer_inputs(cfg, rotary, hidden, DynamicCache(config=cfg))))

    def run():
        for hidden, inputs in runs:
            layer(hidden, cache=DynamicCache(config=cfg), use_cache=True, **inputs)

    return timed(run, repeats)


def decode_case(layer, cfg, rotary, ctx, bt, dtype, repeats, steps, chunk):
    cache = DynamicCache(config=cfg)
    fill(layer, cfg, rotary, torch.randn(bt, ctx, cfg.hidden_size, dtype=dtype), cache, chunk)
    assert cache.get_seq_length() == ctx
    tok = torch.randn(bt, 1, cfg.hidden_size, dtype=dtype)

    def run(n):
        total = 0.0
        for _ in range(n):
            inputs = layer_inputs(cfg, rotary, tok, cache)
            t0 = time.perf_counter()
            layer(tok, cache=cache, use_cache=True, **inputs)
            total += time.perf_counter() - t0
        cache.crop(-n)  # back to the context, untimed
        return total / n

    run(1)  # warm-up step
    times = [run(steps) for _ in range(repeats)]
    assert cache.get_seq_length() == ctx
    return statistics.median(times)


def check_decode_matches(layer, cfg, rotary, dtype):
    """A chunked prefill and a cached step must give the full sequence's last position."""
    hidden = torch.randn(2, 9, cfg.hidden_size, dtype=dtype)
    full = forward(layer, cfg, rotary, hidden, DynamicCache(config=cfg))[:, -1]
    cache = DynamicCache(config=cfg)
    fill(layer, cfg, rotary, hidden[:, :8], cache, chunk=3)
    step = forward(layer, cfg, rotary, hidden[:, 8:], cache)[:, -1]
    err = (full - step).abs().max().item()
    scale = full.abs().max().item()
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    assert err <= tol * max(scale, 1.0), f"decode step differs from the full forward by {err}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="prefill L=128 and decode Bt=1 after 1024 only")
    p.add_argument("--long", action="store_true", help="add prefill L=4096")
    p.add_argument("--ctx-32k", action="store_true", help="add decode Bt=1 after 32768")
    p.add_argument("--skip-4k", action="store_true",
                   help="leave out the 4096-token cases (decode after 4096, and --long)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="decode steps per timed repeat")
    p.add_argument("--fill-chunk", type=int, default=512,
                   help="tokens per chunk of the untimed context prefill (default 512)")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--experts", choices=["grouped_mm", "batched_mm", "eager"],
                   default="grouped_mm",
                   help="transformers' experts implementation (default grouped_mm, the model's)")
    p.add_argument("--tiny", action="store_true",
                   help=f"toy sizes (hidden 64, 8 experts), lengths / {TINY_DIV}, 1 repeat: "
                        "checks the script runs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.dtype == "f32" else torch.bfloat16
    div = TINY_DIV if args.tiny else 1
    if args.tiny:
        args.repeats, args.steps = 1, 2
    chunk = max(args.fill_chunk // div, 1)
    big = 4096 // div
    if args.quick:
        prefills, ragged, decodes = [128 // div], None, [(1024 // div, 1)]
    else:
        prefills = [n // div for n in PREFILL]
        if args.long:
            prefills.append(LONG_PREFILL // div)
        ragged = tuple(n // div for n in RAGGED)
        decodes = [(c // div, bt) for c in CONTEXTS for bt in BATCHES]
        if args.ctx_32k:
            decodes.append((LONG_CONTEXT // div, 1))
    if args.skip_4k:
        prefills = [n for n in prefills if n < big]
        decodes = [(c, bt) for c, bt in decodes if c < big]

    rows = []
    with torch.inference_mode():
        cfg, layer, rotary = build(dtype, args.experts, args.tiny)
        params = sum(t.numel() for t in layer.parameters())
        name = "DeepSeek-V2-Lite layer (tiny)" if args.tiny else "DeepSeek-V2-Lite layer"
        print(f"{name}: {params / 1e6:.1f} M parameters, {args.dtype}, experts "
              f"{args.experts}, {args.threads} threads", flush=True)
        check_decode_matches(layer, cfg, rotary, dtype)
        for length in prefills:
            t = prefill_case(layer, cfg, rotary, [length], dtype, args.repeats)
            rows.append((f"prefill Bt=1 L={length}", t, length / t))
            print(f"  prefill L={length}: {t * 1e3:.1f} ms, {length / t:.1f} tok/s", flush=True)
        if ragged:
            t = prefill_case(layer, cfg, rotary, list(ragged), dtype, args.repeats)
            n = sum(ragged)
            rows.append((f"ragged prefill {ragged[0]}+{ragged[1]} (run one after the other, "
                         f"sum)", t, n / t))
            print(f"  ragged prefill {ragged[0]}+{ragged[1]}: {t * 1e3:.1f} ms, {n / t:.1f} "
                  "tok/s", flush=True)
        for ctx, bt in decodes:
            t = decode_case(layer, cfg, rotary, ctx, bt, dtype, args.repeats, args.steps, chunk)
            rows.append((f"decode Bt={bt} after {ctx}", t, bt / t))
            print(f"  decode Bt={bt} after {ctx}: {t * 1e3:.2f} ms/step, {bt / t:.1f} tok/s",
                  flush=True)
    print()
    print(f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
          f"{name}, {args.dtype}, experts {args.experts}, eager attention, {args.threads} "
          f"threads, median of {args.repeats} after a warm-up")
    print()
    print("| case | time | tokens/s |")
    print("|---|---:|---:|")
    for case, t, tps in rows:
        # A decode step brings one token to each of Bt sequences: its time is each one's
        # per-token latency.
        unit = f"{t * 1e3:.2f} ms/step" if case.startswith("decode") else f"{t * 1e3:.1f} ms"
        print(f"| {case} | {unit} | {tps:.1f} |")
    if ragged:
        print()
        print("transformers has no ragged batch: the ragged row runs the two sequences one after "
              "the other, each from an empty cache, and its time is the sum of both.")


if __name__ == "__main__":
    main()
