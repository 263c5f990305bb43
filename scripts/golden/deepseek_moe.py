"""Golden files for the `moe` op: transformers' own DeepSeek MoE blocks at tiny sizes.

Builds `DeepseekV2Moe` (softmax, group_limited_greedy) and `DeepseekV3MoE` (sigmoid with
e_score_correction_bias, noaux_tc groups, norm_topk_prob) with seeded random weights, runs them
in float32 on random hidden states x (T, hidden) and writes, per module, one safetensors file
under tests/data/ holding the weights under the checkpoint names the crate reads
(`gate.weight`, `gate.e_score_correction_bias`, `experts.{e}.{gate,up,down}_proj.weight`,
`shared_experts.{gate,up,down}_proj.weight`), `x` and `y`, plus the block's config as
safetensors metadata. transformers stores the routed experts fused (`experts.gate_up_proj`
(E, 2I, hidden), gate rows first; `experts.down_proj` (E, hidden, I)); they are split back into
the per-expert checkpoint tensors here.

Run from the repository root:  python scripts/golden/deepseek_moe.py
(needs torch, transformers ≥ 5 and safetensors; seed 20240607; about 20 KB per file.)
"""

import json

import torch
from safetensors.torch import save_file
from transformers.models.deepseek_v2.configuration_deepseek_v2 import DeepseekV2Config
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe
from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

SEED = 20240607
HIDDEN, INTER, EXPERTS, TOKENS = 16, 8, 8, 11


def randomise(module, generator):
    for name, p in module.named_parameters():
        fan_in = p.shape[-1]
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)


def export(module, cfg, meta, path, generator):
    inter = cfg.moe_intermediate_size
    x = torch.randn(TOKENS, HIDDEN, generator=generator)
    with torch.no_grad():
        y = module(x.unsqueeze(0)).squeeze(0)
    t = {"gate.weight": module.gate.weight.detach().clone(), "x": x, "y": y}
    bias = getattr(module.gate, "e_score_correction_bias", None)
    if bias is not None:
        t["gate.e_score_correction_bias"] = bias.detach().clone()
    gu = module.experts.gate_up_proj.detach()
    down = module.experts.down_proj.detach()
    for e in range(gu.shape[0]):
        t[f"experts.{e}.gate_proj.weight"] = gu[e, :inter].clone()
        t[f"experts.{e}.up_proj.weight"] = gu[e, inter:].clone()
        t[f"experts.{e}.down_proj.weight"] = down[e].clone()
    for n in ("gate_proj", "up_proj", "down_proj"):
        t[f"shared_experts.{n}.weight"] = getattr(module.shared_experts, n).weight.detach().clone()
    t = {k: v.contiguous().float() for k, v in t.items()}
    save_file(t, path, metadata={"config": json.dumps(meta)})
    print(path, "y[0,:4] =", y[0, :4].tolist())


def main():
    g = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    common = dict(
        hidden_size=HIDDEN,
        moe_intermediate_size=INTER,
        n_routed_experts=EXPERTS,
        num_experts_per_tok=3,
        n_group=4,
        topk_group=2,
        n_shared_experts=2,
        hidden_act="silu",
    )
    attn = dict(num_attention_heads=2, num_key_value_heads=2)
    v2 = DeepseekV2Config(
        **common, **attn, topk_method="group_limited_greedy", routed_scaling_factor=1.5, norm_topk_prob=False
    )
    m2 = DeepseekV2Moe(v2).eval()
    randomise(m2, g)
    meta = dict(common, topk_method="group_limited_greedy", routed_scaling_factor=1.5, norm_topk_prob=False)
    export(m2, v2, meta, "tests/data/deepseek_v2_moe.safetensors", g)

    v3 = DeepseekV3Config(**common, **attn, routed_scaling_factor=2.5, norm_topk_prob=True)
    m3 = DeepseekV3MoE(v3).eval()
    randomise(m3, g)
    with torch.no_grad():
        m3.gate.e_score_correction_bias.copy_(torch.randn(EXPERTS, generator=g) * 0.1)
    meta = dict(common, topk_method="noaux_tc", routed_scaling_factor=2.5, norm_topk_prob=True)
    export(m3, v3, meta, "tests/data/deepseek_v3_moe.safetensors", g)


if __name__ == "__main__":
    main()
