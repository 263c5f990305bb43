"""Golden data for the Mamba language model tests: tiny random checkpoints in Hugging Face layout
and the logits transformers' MambaForCausalLM gives for them (its slow, pure-PyTorch path: no
CUDA kernels are involved on a CPU).

Run once from the repository root (CI never runs it; its output is committed):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers safetensors tokenizers
    /tmp/venv/bin/python scripts/golden/mamba.py

Writes tests/data/mamba_tiny_{tied,untied}/ with config.json, model.safetensors (f32), golden.safetensors
(input_ids_<k> (1, L_k) int64 and logits_<k> (1, L_k, vocab) f32 for each prompt k, prompts of different
lengths so the ragged path has something to match) and, in the tied one, a tiny tokenizer.json.
Seeded: the same torch/transformers versions give the same files.
"""

import json
import os

import torch
from safetensors.torch import save_file
from transformers import MambaConfig, MambaForCausalLM

VOCAB = 64
PROMPT_LENGTHS = [5, 12, 1]


def perturb(model, gen):
    # transformers initialises norms to 1 and some biases to 0: make every parameter carry
    # information so a missing or misplaced tensor changes the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias") and "dt_proj" not in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embeddings.weight") or name.endswith("lm_head.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def make(out_dir, seed, **cfg):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = MambaConfig(vocab_size=VOCAB, hidden_size=32, state_size=16, num_hidden_layers=2,
                         pad_token_id=0, bos_token_id=0, eos_token_id=0, **cfg)
    model = MambaForCausalLM(config).eval()
    perturb(model, gen)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    golden = {}
    for k, n in enumerate(PROMPT_LENGTHS):
        ids = torch.randint(0, VOCAB, (1, n), generator=gen)
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits.float()
        golden[f"input_ids_{k}"] = ids.to(torch.int64).contiguous()
        golden[f"logits_{k}"] = logits.contiguous()
    save_file(golden, os.path.join(out_dir, "golden.safetensors"))
    return model


def tokenizer(out_dir):
    # A word-level tokenizer over a tiny vocabulary of VOCAB entries, enough for `generate` to
    # encode a prompt and decode what the model samples.
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    words = ["<eos>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.save(os.path.join(out_dir, "tokenizer.json"))


if __name__ == "__main__":
    make("tests/data/mamba_tiny_tied", 1, conv_kernel=4, use_bias=False, use_conv_bias=True,
         time_step_rank="auto", tie_word_embeddings=True)
    tokenizer("tests/data/mamba_tiny_tied")
    make("tests/data/mamba_tiny_untied", 2, conv_kernel=3, use_bias=True, use_conv_bias=False,
         time_step_rank=3, expand=3, tie_word_embeddings=False)
    print(json.dumps({"torch": torch.__version__}))
