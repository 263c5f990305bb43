#!/usr/bin/env python3
"""Whole-model Mamba-1 and Mamba-2 timings with Hugging Face transformers on the CPU, beside the
`mamba_model` rows of `ssm-mla bench`.

Same cases as the suite: random weights from `MambaConfig` at the shapes of mamba-130m and
mamba-370m, and from `Mamba2Config` at the shapes of mamba2-130m (f32, or bf16 with --dtype bf16); prefill of one sequence of L = 128 and 512 tokens
(tokens/s; only the last position's logits, as in generation); decode with the model's cache
stepping one token at a time for Bt = 1 and 4 after a 16-token prefill (per-token latency).
Warm-up run first, then the median of the repeats; a markdown table at the end.

How to run (CI never runs it; it needs a Python environment with torch and transformers):

    python -m venv venv && venv/bin/pip install torch transformers
    venv/bin/python scripts/bench/transformers_mamba.py            # both models, 2 threads
    venv/bin/python scripts/bench/transformers_mamba.py --quick    # mamba-130m, L = 128 only
    venv/bin/python scripts/bench/transformers_mamba.py --threads 8 --repeats 7
    venv/bin/python scripts/bench/transformers_mamba.py --models mamba2-130m
    venv/bin/python scripts/bench/transformers_mamba.py --tiny     # a smoke test of the script

Checked against transformers 5.25 (the cache argument is `cache`, formerly `cache_params`; the
model returns it as `.cache` when `use_cache=True`). Without the mamba-ssm CUDA kernels,
transformers runs its sequential PyTorch path (Mamba-1), or its chunked SSD scan in PyTorch for
prefill and the recurrent step for decode (Mamba-2): what a CPU user gets.
"""

import argparse
import statistics
import time

import torch
from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

SHAPES = {
    # hidden, layers (vocab 50280, state 16, conv 4, expand 2, as state-spaces' checkpoints)
    "mamba-130m": (768, 24),
    "mamba-370m": (1024, 48),
    # hidden, layers; 24 heads of 64, state 128, one group, conv 4, expand 2, chunk 256,
    # vocab 50288, as state-spaces/mamba2-130m
    "mamba2-130m": (768, 24),
}
DECODE_CONTEXT = 16


def build(name, dtype, tiny=False):
    hidden, layers = SHAPES[name]
    vocab = 50288 if name.startswith("mamba2") else 50280
    if tiny:
        # The same code paths at toy sizes, to check the script itself in seconds.
        hidden, layers, vocab = 64, 2, 256
    if name.startswith("mamba2"):
        head_dim = 16 if tiny else 64
        cfg = Mamba2Config(
            vocab_size=vocab,
            hidden_size=hidden,
            num_heads=2 * hidden // head_dim,
            head_dim=head_dim,
            state_size=16 if tiny else 128,
            n_groups=1,
            num_hidden_layers=layers,
            expand=2,
            conv_kernel=4,
            chunk_size=32 if tiny else 256,
            use_bias=False,
            use_conv_bias=True,
            tie_word_embeddings=True,
        )
        model_class = Mamba2ForCausalLM
    else:
        cfg = MambaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            state_size=16,
            num_hidden_layers=layers,
            expand=2,
            conv_kernel=4,
            use_bias=False,
            use_conv_bias=True,
            tie_word_embeddings=True,
        )
        model_class = MambaForCausalLM
    torch.manual_seed(0)
    model = model_class(cfg).to(dtype).eval()
    return cfg, model


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def prefill_case(model, vocab, length, repeats):
    ids = torch.randint(0, vocab, (1, length))

    def run():
        model(ids, use_cache=False, logits_to_keep=1)

    return timed(run, repeats)


def decode_case(model, vocab, bt, repeats, steps):
    ctx = torch.randint(0, vocab, (bt, DECODE_CONTEXT))
    out = model(ctx, use_cache=True, logits_to_keep=1)
    cache = out.cache
    tok = torch.randint(0, vocab, (bt, 1))
    model(tok, cache=cache, use_cache=True, logits_to_keep=1)  # warm-up step
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            out = model(tok, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def check_decode_matches(model, vocab):
    """The cached step must give the logits of the full sequence's last position."""
    ids = torch.randint(0, vocab, (1, 9))
    full = model(ids, use_cache=False).logits[0, -1]
    out = model(ids[:, :8], use_cache=True, logits_to_keep=1)
    step = model(ids[:, 8:], cache=out.cache, use_cache=True, logits_to_keep=1).logits[0, -1]
    err = (full - step).abs().max().item()
    scale = full.abs().max().item()
    assert err <= 1e-3 * max(scale, 1.0), f"decode step differs from the full forward by {err}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="mamba-130m prefill L=128 only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="decode steps per timed repeat")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--models", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--tiny", action="store_true",
                   help="toy sizes (hidden 64, 2 layers), 1 repeat: checks the script runs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.dtype == "f32" else torch.bfloat16
    models = ["mamba-130m"] if args.quick else args.models
    lengths = [128] if args.quick else [128, 512]
    batches = [] if args.quick else [1, 4]
    if args.tiny:
        args.repeats, args.steps = 1, 2
    rows = []
    with torch.inference_mode():
        for name in models:
            cfg, model = build(name, dtype, args.tiny)
            params = sum(t.numel() for t in model.parameters())
            name = f"{name} (tiny)" if args.tiny else name
            print(f"{name}: {params / 1e6:.1f} M parameters, {args.dtype}, {args.threads} threads",
                  flush=True)
            check_decode_matches(model, cfg.vocab_size)
            for length in lengths:
                t = prefill_case(model, cfg.vocab_size, length, args.repeats)
                rows.append((name, f"prefill Bt=1 L={length}", t, length / t))
                print(f"  prefill L={length}: {t * 1e3:.1f} ms, {length / t:.1f} tok/s", flush=True)
            for bt in batches:
                t = decode_case(model, cfg.vocab_size, bt, args.repeats, args.steps)
                rows.append((name, f"decode Bt={bt} after {DECODE_CONTEXT}", t, bt / t))
                print(f"  decode Bt={bt}: {t * 1e3:.2f} ms/step, {bt / t:.1f} tok/s", flush=True)
            del model
    print()
    print(f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
          f"{args.dtype}, {args.threads} threads, median of {args.repeats} after a warm-up")
    print()
    print("| model | case | time | tokens/s |")
    print("|---|---|---:|---:|")
    for name, case, t, tps in rows:
        # A decode step brings one token to each of Bt sequences: its time is each one's
        # per-token latency.
        unit = f"{t * 1e3:.1f} ms" if "prefill" in case else f"{t * 1e3:.2f} ms/step"
        print(f"| {name} | {case} | {unit} | {tps:.1f} |")


if __name__ == "__main__":
    main()
