"""Golden data for the DeepSeek-V2/V3 language model tests: tiny random checkpoints in Hugging Face
layout and the logits transformers' DeepseekV2ForCausalLM / DeepseekV3ForCausalLM give for them
(eager attention, CPU, float32).

Run once from the repository root with transformers 5.25 (CI never runs it; its output is
committed):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers==5.25.0 safetensors
    /tmp/venv/bin/python scripts/golden/deepseek.py

Writes tests/data/deepseek_v2_tiny/ and tests/data/deepseek_v3_tiny/ with config.json and
model.safetensors (f32, written by save_pretrained: the routed experts under their per-expert
checkpoint names `mlp.experts.{e}.{gate,up,down}_proj.weight`; the directory is loaded back with
from_pretrained and must give the same logits) and golden.safetensors:

- input_ids_<k> (1, L_k) int64 and logits_<k> (1, L_k, vocab) f32 for each prompt k (lengths 13, 6
  and 1);
- batch_input_ids (2, 9) and batch_logits (2, 9, vocab): one forward over a batch of two (no
  padding, so no attention mask is involved);
- decode_from (1,) int64 = P and decode_logits_0 (1, L_0, vocab): prompt 0 prefilled for its first
  P tokens with a DynamicCache, then fed one token per call through the cache, each call's logits
  appended. The script asserts they agree with the one-shot logits and prints the gap.

Both models: hidden 32, 3 layers (layer 0 dense with intermediate 48, layers 1-2 MoE), 4 heads,
kv_lora_rank 16, qk_nope 8, qk_rope 8, v 8, 8 routed experts of intermediate 16 in 4 groups
keeping 2, one shared expert, vocab 128, rope_theta 10000, norms and the V3 expert-score bias
random.
- V2: q_lora_rank null (q_proj), top-3 group_limited_greedy softmax routing (with top-2 and 2 kept
  groups, max-scored groups always hold the two best experts, so the group limit would never
  bind), routed_scaling_factor 1.5,
  no norm_topk_prob (transformers' V2 router never normalises), tied embeddings, eos 0, plus a
  word-level tokenizer.json.
- V3: q_lora_rank 24, top-2 noaux_tc sigmoid routing with a random e_score_correction_bias,
  norm_topk_prob, routed_scaling_factor 2.5, untied head, eos [1, 2], and YaRN (factor 4,
  original_max_position_embeddings 4096 with max_position_embeddings 16384, beta 32/1, mscale 1, mscale_all_dim 0.8: the ramp
  interpolates 2 of the 4 frequencies, cos/sin are scaled by mscale/mscale_all_dim's ratio and the
  softmax scale by mscale_all_dim's mscale squared).

Seeded: the same torch/transformers versions give the same files.
"""

import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, DeepseekV2Config, DeepseekV2ForCausalLM,
                          DeepseekV3Config, DeepseekV3ForCausalLM, DynamicCache)

VOCAB = 128
PROMPT_LENGTHS = [13, 6, 1]
BATCH_SHAPE = (2, 9)
DECODE_FROM = 5

COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=8,
              qk_rope_head_dim=8, v_head_dim=8, moe_intermediate_size=16, n_routed_experts=8,
              n_group=4, topk_group=2, n_shared_experts=1,
              first_k_dense_replace=1, rms_norm_eps=1e-6,
              hidden_act="silu", attention_bias=False, pad_token_id=None, bos_token_id=None)


def perturb(model, gen):
    # transformers initialises weights N(0, 0.02), norms to 1 and the expert-score bias to 0:
    # move everything away from that so a missing, misplaced or ignored tensor changes the
    # logits, and scale matrices as 1/sqrt(fan_in) so activations stay O(1).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))


def logits_of(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, **kw).logits.float()


def decode(model, ids, start):
    """Prefill ids[:, :start] with a cache, then one token per call; every position's logits."""
    cache = DynamicCache(config=model.config)
    rows = [logits_of(model, ids[:, :start], cache=cache, use_cache=True)]
    for t in range(start, ids.shape[1]):
        rows.append(logits_of(model, ids[:, t:t + 1], cache=cache, use_cache=True))
    return torch.cat(rows, dim=1)


def make(out_dir, seed, config, cls):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).eval()
    perturb(model, gen)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    gc = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    golden = {}
    for k, n in enumerate(PROMPT_LENGTHS):
        ids = torch.randint(0, VOCAB, (1, n), generator=gen)
        golden[f"input_ids_{k}"] = ids.to(torch.int64).contiguous()
        golden[f"logits_{k}"] = logits_of(model, ids, use_cache=False).contiguous()
    batch = torch.randint(0, VOCAB, BATCH_SHAPE, generator=gen)
    golden["batch_input_ids"] = batch.to(torch.int64).contiguous()
    golden["batch_logits"] = logits_of(model, batch, use_cache=False).contiguous()
    # The batch rows one at a time: a batch must not change a row's logits.
    for b in range(BATCH_SHAPE[0]):
        alone = logits_of(model, batch[b:b + 1], use_cache=False)
        gap = (alone - golden["batch_logits"][b:b + 1]).abs().max().item()
        print(f"{out_dir}: batch row {b} alone vs in the batch max |diff| {gap:.3g}")
    decoded = decode(model, golden["input_ids_0"], DECODE_FROM)
    gap = (decoded - golden["logits_0"]).abs().max().item()
    print(f"{out_dir}: decode-from-{DECODE_FROM} vs one-shot max |diff| {gap:.3g}")
    assert gap < 1e-4, "transformers' cached decode should equal its one-shot forward"
    golden["decode_from"] = torch.tensor([DECODE_FROM], dtype=torch.int64)
    golden["decode_logits_0"] = decoded.contiguous()
    save_file(golden, os.path.join(out_dir, "golden.safetensors"))
    # The directory as written must be what transformers reads back.
    again = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager").eval()
    for k in range(len(PROMPT_LENGTHS)):
        same = logits_of(again, golden[f"input_ids_{k}"], use_cache=False)
        gap = (same - golden[f"logits_{k}"]).abs().max().item()
        print(f"{out_dir}: reloaded prompt {k} max |diff| {gap:.3g}")
        assert gap < 1e-5, f"{out_dir}: reload changed prompt {k}"
    print(f"{out_dir}: logits range {golden['logits_0'].min().item():.3g}.."
          f"{golden['logits_0'].max().item():.3g}")


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
    v2 = DeepseekV2Config(**COMMON, q_lora_rank=None, topk_method="group_limited_greedy",
                          num_experts_per_tok=3,
                          routed_scaling_factor=1.5, norm_topk_prob=False,
                          tie_word_embeddings=True, eos_token_id=0, max_position_embeddings=256,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    make("tests/data/deepseek_v2_tiny", 11, v2, DeepseekV2ForCausalLM)
    tokenizer("tests/data/deepseek_v2_tiny", VOCAB)
    v3 = DeepseekV3Config(**COMMON, q_lora_rank=24, routed_scaling_factor=2.5, num_experts_per_tok=2,
                          norm_topk_prob=True, tie_word_embeddings=False, eos_token_id=[1, 2],
                          rope_interleave=True, max_position_embeddings=16384,
                          rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                           "factor": 4.0,
                                           "original_max_position_embeddings": 4096,
                                           "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0,
                                           "mscale_all_dim": 0.8})
    make("tests/data/deepseek_v3_tiny", 12, v3, DeepseekV3ForCausalLM)
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__}))
