"""Golden data for the Mamba-2 language model tests: tiny random checkpoints in Hugging Face layout
and the logits transformers' Mamba2ForCausalLM gives for them (its pure-PyTorch path: on a CPU no
CUDA kernels are involved, so prefill is the chunked SSD scan and decode the recurrent step).

Run once from the repository root with transformers 5.25 (CI never runs it; its output is
committed):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers==5.25.0 safetensors
    /tmp/venv/bin/python scripts/golden/mamba2.py

Writes tests/data/mamba2_tiny_{tied,untied}/ with config.json, model.safetensors (f32) and
golden.safetensors:

- input_ids_<k> (1, L_k) int64 and logits_<k> (1, L_k, vocab) f32 for each prompt k (lengths 40, 7
  and 1; chunk_size is 16, so the first prompt spans three chunks, the last one partial);
- batch_input_ids (2, 24) and batch_logits (2, 24, vocab): one forward over a batch of two;
- in the tied checkpoint only, decode_from (1,) int64 = P and decode_logits_0 (1, L_0, vocab):
  prompt 0 prefilled for its first P tokens with a cache (the chunked scan, P = 20 crossing a chunk
  boundary), then fed one token per call through the cache (the recurrent step), each call's logits
  appended. The untied checkpoint has a finite time_step_limit, and transformers' one-token step
  (like mamba_ssm's) does not clamp dt to it while its chunked scan does, so its decoded logits
  differ from its own one-shot ones; the script prints that difference and records no decode
  logits there.

Seeded: the same torch/transformers versions give the same files.
"""

import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import Mamba2Config, Mamba2ForCausalLM

VOCAB = 128
PROMPT_LENGTHS = [40, 7, 1]
BATCH_SHAPE = (2, 24)
DECODE_FROM = 20


def perturb(model, gen):
    # transformers initialises norms to 1, D to 1, A_log to ln(1..H) and biases to 0: move every
    # parameter away from its init so a missing, misplaced or ignored tensor changes the logits.
    # dt_bias spreads softplus(dt + dt_bias) over ~1e-3..1, so a finite time_step_limit binds.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("A_log"):
                p.copy_(-1.0 + 2.5 * torch.rand(p.shape, generator=gen))
            elif name.endswith("dt_bias"):
                p.copy_(-2.5 + 1.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".D"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embeddings.weight") or name.endswith("lm_head.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def logits_of(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, **kw)


def decode(model, ids, start):
    """Prefill ids[:, :start] with a cache, then one token per call; every position's logits."""
    out = logits_of(model, ids[:, :start], use_cache=True)
    rows, cache = [out.logits.float()], out.cache
    for t in range(start, ids.shape[1]):
        out = logits_of(model, ids[:, t : t + 1], cache=cache, use_cache=True)
        rows.append(out.logits.float())
        cache = out.cache
    return torch.cat(rows, dim=1)


def make(out_dir, seed, record_decode, **cfg):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = Mamba2Config(vocab_size=VOCAB, hidden_size=64, state_size=16, num_hidden_layers=2,
                          expand=2, chunk_size=16, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                          **cfg)
    model = Mamba2ForCausalLM(config).eval()
    perturb(model, gen)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    golden = {}
    for k, n in enumerate(PROMPT_LENGTHS):
        ids = torch.randint(0, VOCAB, (1, n), generator=gen)
        golden[f"input_ids_{k}"] = ids.to(torch.int64).contiguous()
        golden[f"logits_{k}"] = logits_of(model, ids, use_cache=False).logits.float().contiguous()
    batch = torch.randint(0, VOCAB, BATCH_SHAPE, generator=gen)
    golden["batch_input_ids"] = batch.to(torch.int64).contiguous()
    golden["batch_logits"] = logits_of(model, batch, use_cache=False).logits.float().contiguous()
    decoded = decode(model, golden["input_ids_0"], DECODE_FROM)
    gap = (decoded - golden["logits_0"]).abs().max().item()
    print(f"{out_dir}: decode-from-{DECODE_FROM} vs one-shot max |diff| {gap:.3g}")
    if record_decode:
        assert gap < 1e-4, "transformers' cached decode should equal its one-shot forward here"
        golden["decode_from"] = torch.tensor([DECODE_FROM], dtype=torch.int64)
        golden["decode_logits_0"] = decoded.contiguous()
    save_file(golden, os.path.join(out_dir, "golden.safetensors"))


def tokenizer(out_dir, vocab_size):
    # A word-level tokenizer over the tiny vocabulary, enough for `generate` to encode a prompt
    # and decode what the model samples.
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    words = ["<eos>", "<unk>"] + [f"w{i}" for i in range(vocab_size - 2)]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.save(os.path.join(out_dir, "tokenizer.json"))


if __name__ == "__main__":
    # 8 heads of 16 in 2 groups, biases on the conv only, tied head, dt unbounded (the defaults).
    make("tests/data/mamba2_tiny_tied", 1, True, num_heads=8, head_dim=16, n_groups=2,
         conv_kernel=4, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)
    tokenizer("tests/data/mamba2_tiny_tied", VOCAB)
    # 4 heads of 32 in 1 group, W = 3, in/out_proj biases, no conv bias, untied head, and a
    # finite dt range that clamps some heads from below and some from above.
    make("tests/data/mamba2_tiny_untied", 2, False, num_heads=4, head_dim=32, n_groups=1,
         conv_kernel=3, use_bias=True, use_conv_bias=False, tie_word_embeddings=False,
         time_step_limit=(0.01, 0.3))
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__}))
