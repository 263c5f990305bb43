//! The DeepSeek-V2/V3 mixture-of-experts block (transformers' `DeepseekV2Moe`,
//! `DeepseekV3MoE`): its configuration ([`MoeConfig`]), the host weights under transformers'
//! per-expert checkpoint names ([`MoeHostWeights`]) and the validation of their shapes.
//!
//! y (T, hidden) = Σ_k w_k · expert_{e_k}(x) + shared(x), expert(x) = down(silu(gate·x) ⊙ up·x),
//! the experts e_k and weights w_k chosen per token by the router (see [`crate::reference::moe`]).

use crate::error::{Error, Result};
use crate::io::SafeTensors;

/// How router logits become scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    /// DeepSeek-V2: softmax over the experts.
    Softmax,
    /// DeepSeek-V3: a sigmoid per expert; the choice adds `e_score_correction_bias`.
    Sigmoid,
}

/// How the top-k experts are chosen (transformers' `topk_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopkMethod {
    /// V2 "greedy": the top k of all scores.
    Greedy,
    /// V2 "group_limited_greedy": group score = the largest score of its group; the experts of
    /// the `topk_group` best groups keep their scores, the others count as 0; then the top k.
    GroupLimitedGreedy,
    /// V3 "noaux_tc": group score = the sum of the two largest choice scores (score + bias) of
    /// its group; the experts outside the `topk_group` best groups count as −∞; then the top k
    /// by choice score.
    NoauxTc,
}

impl TopkMethod {
    /// Parse transformers' `topk_method` string.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "greedy" => Ok(Self::Greedy),
            "group_limited_greedy" => Ok(Self::GroupLimitedGreedy),
            "noaux_tc" => Ok(Self::NoauxTc),
            other => Err(Error::invalid(format!(
                "topk_method {other:?}: expected greedy, group_limited_greedy or noaux_tc"
            ))),
        }
    }
}

/// The MoE block's sizes and routing (the Hugging Face config fields of the same names).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    /// hidden_size.
    pub hidden: usize,
    /// n_routed_experts (E).
    pub experts: usize,
    /// num_experts_per_tok (k).
    pub top_k: usize,
    /// n_group: experts are split into this many equal groups (1 for plain greedy).
    pub n_group: usize,
    /// topk_group: groups kept per token.
    pub topk_group: usize,
    /// topk_method.
    pub method: TopkMethod,
    /// Softmax (V2) or sigmoid (V3) scores.
    pub scoring: Scoring,
    /// norm_topk_prob: divide the k weights by their sum (+ 1e-20). transformers' V2 router never
    /// normalises; DeepSeek's own V2 code does when this is set (V2 checkpoints set it false).
    pub norm_topk_prob: bool,
    /// routed_scaling_factor, applied to the weights after normalisation.
    pub routed_scaling_factor: f64,
    /// moe_intermediate_size (I) of each routed expert.
    pub intermediate: usize,
    /// n_shared_experts: the shared expert is one SwiGLU of intermediate I·n_shared (0: none).
    pub n_shared: usize,
}

/// Most experts a token may pick (the routing kernel keeps them in registers).
pub const MAX_TOP_K: usize = 16;
/// Most expert groups (a kept-group bit mask of one 32-bit word).
pub const MAX_GROUPS: usize = 32;
/// Most routed experts (the grouping kernel's per-expert counts in workgroup memory).
pub const MAX_EXPERTS: usize = 1024;

impl MoeConfig {
    /// DeepSeek-V2-Lite's MoE layer: hidden 2048, 64 experts top-6 greedy softmax, I = 1408,
    /// 2 shared experts, routed_scaling_factor 1.
    pub fn deepseek_v2_lite() -> Self {
        Self {
            hidden: 2048,
            experts: 64,
            top_k: 6,
            n_group: 1,
            topk_group: 1,
            method: TopkMethod::Greedy,
            scoring: Scoring::Softmax,
            norm_topk_prob: false,
            routed_scaling_factor: 1.0,
            intermediate: 1408,
            n_shared: 2,
        }
    }

    /// Experts per group.
    pub fn group_size(&self) -> usize {
        self.experts / self.n_group.max(1)
    }

    /// Whether groups restrict the choice (every method but greedy).
    pub fn grouped(&self) -> bool {
        self.method != TopkMethod::Greedy
    }

    /// Intermediate size of the shared expert (I·n_shared).
    pub fn shared_intermediate(&self) -> usize {
        self.intermediate * self.n_shared
    }

    /// Check the configuration is consistent and within the kernels' limits.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("moe config: {m}")));
        if self.hidden == 0 || self.intermediate == 0 {
            return bad("hidden_size and moe_intermediate_size must be positive".into());
        }
        if self.hidden % 4 != 0 || self.intermediate % 4 != 0 {
            return bad(format!(
                "hidden_size {} and moe_intermediate_size {} must be multiples of 4 (vec4 loads)",
                self.hidden, self.intermediate
            ));
        }
        if self.experts == 0 || self.experts > MAX_EXPERTS {
            return bad(format!(
                "n_routed_experts {} not in 1..={MAX_EXPERTS}",
                self.experts
            ));
        }
        if self.top_k == 0 || self.top_k > MAX_TOP_K.min(self.experts) {
            return bad(format!(
                "num_experts_per_tok {} not in 1..={}",
                self.top_k,
                MAX_TOP_K.min(self.experts)
            ));
        }
        let scoring_ok = match self.method {
            TopkMethod::NoauxTc => self.scoring == Scoring::Sigmoid,
            _ => self.scoring == Scoring::Softmax,
        };
        if !scoring_ok {
            return bad(format!(
                "topk_method {:?} does not go with {:?} scores",
                self.method, self.scoring
            ));
        }
        if self.grouped() {
            let (g, kg) = (self.n_group, self.topk_group);
            if g == 0 || g > MAX_GROUPS || self.experts % g != 0 {
                return bad(format!(
                    "n_group {g} must divide n_routed_experts {} and be at most {MAX_GROUPS}",
                    self.experts
                ));
            }
            if kg == 0 || kg > g || self.top_k > kg * self.group_size() {
                return bad(format!(
                    "topk_group {kg} must be in 1..=n_group {g} and keep at least \
                     num_experts_per_tok {} experts",
                    self.top_k
                ));
            }
            if self.method == TopkMethod::NoauxTc && self.group_size() < 2 {
                return bad("noaux_tc sums the top 2 of each group: groups need 2 experts".into());
            }
        }
        if !self.routed_scaling_factor.is_finite() {
            return bad("routed_scaling_factor must be finite".into());
        }
        Ok(())
    }

    /// Every weight tensor of the block under transformers' names (relative to the layer's
    /// `mlp.`), with its shape, in a fixed order.
    pub fn weight_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden, self.intermediate);
        let mut v = vec![("gate.weight".to_string(), vec![self.experts, h])];
        if self.scoring == Scoring::Sigmoid {
            v.push(("gate.e_score_correction_bias".into(), vec![self.experts]));
        }
        for e in 0..self.experts {
            v.push((format!("experts.{e}.gate_proj.weight"), vec![i, h]));
            v.push((format!("experts.{e}.up_proj.weight"), vec![i, h]));
            v.push((format!("experts.{e}.down_proj.weight"), vec![h, i]));
        }
        if self.n_shared > 0 {
            let s = self.shared_intermediate();
            v.push(("shared_experts.gate_proj.weight".into(), vec![s, h]));
            v.push(("shared_experts.up_proj.weight".into(), vec![s, h]));
            v.push(("shared_experts.down_proj.weight".into(), vec![h, s]));
        }
        v
    }

    /// Tokens T of hidden states `x` of shape (T, hidden), or an error naming `name`.
    pub fn tokens_of(&self, name: &str, x: &[usize]) -> Result<usize> {
        match x {
            [t, h] if *h == self.hidden => Ok(*t),
            _ => Err(Error::shape(
                name,
                format!("(T, hidden) with hidden = {}", self.hidden),
                x,
            )),
        }
    }
}

/// One SwiGLU expert's weights (row-major, PyTorch `Linear` [out, in]).
#[derive(Clone, Debug, PartialEq)]
pub struct SwigluWeights {
    /// gate_proj (I, hidden).
    pub gate: Vec<f32>,
    /// up_proj (I, hidden).
    pub up: Vec<f32>,
    /// down_proj (hidden, I).
    pub down: Vec<f32>,
}

/// The block's weights on the host, as f32 values (halves widened exactly).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeHostWeights {
    /// gate.weight (E, hidden): the router.
    pub router: Vec<f32>,
    /// gate.e_score_correction_bias (E), V3 only.
    pub bias: Option<Vec<f32>>,
    /// experts.{e}: E routed experts of intermediate I.
    pub experts: Vec<SwigluWeights>,
    /// shared_experts of intermediate I·n_shared, when n_shared > 0.
    pub shared: Option<SwigluWeights>,
}

impl MoeHostWeights {
    /// Read the block from `st` under `prefix` (e.g. `"model.layers.1.mlp."` or `""`), checking
    /// every shape against `cfg`; a missing tensor or a wrong shape names the tensor.
    pub fn from_safetensors(cfg: &MoeConfig, st: &SafeTensors, prefix: &str) -> Result<Self> {
        cfg.validate()?;
        let get = |name: &str, spelled: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let full = format!("{prefix}{name}");
            let t = st.get(&full)?;
            t.expect(&full, spelled, shape)?;
            Ok(t.to_f32().to_vec())
        };
        let (h, i) = (cfg.hidden, cfg.intermediate);
        let swiglu = |base: &str, i: usize| -> Result<SwigluWeights> {
            Ok(SwigluWeights {
                gate: get(&format!("{base}.gate_proj.weight"), "(I, hidden)", &[i, h])?,
                up: get(&format!("{base}.up_proj.weight"), "(I, hidden)", &[i, h])?,
                down: get(&format!("{base}.down_proj.weight"), "(hidden, I)", &[h, i])?,
            })
        };
        Ok(Self {
            router: get("gate.weight", "(E, hidden)", &[cfg.experts, h])?,
            bias: match cfg.scoring {
                Scoring::Sigmoid => {
                    Some(get("gate.e_score_correction_bias", "(E)", &[cfg.experts])?)
                }
                Scoring::Softmax => None,
            },
            experts: (0..cfg.experts)
                .map(|e| swiglu(&format!("experts.{e}"), i))
                .collect::<Result<_>>()?,
            shared: (cfg.n_shared > 0)
                .then(|| swiglu("shared_experts", cfg.shared_intermediate()))
                .transpose()?,
        })
    }

    /// Check the lengths of every tensor against `cfg` (for weights built in memory).
    pub fn check(&self, cfg: &MoeConfig) -> Result<()> {
        cfg.validate()?;
        let (h, i) = (cfg.hidden, cfg.intermediate);
        let len = |name: String, v: &[f32], shape: &[usize]| -> Result<()> {
            if v.len() != shape.iter().product::<usize>() {
                return Err(Error::shape(&name, format!("{shape:?}"), &[v.len()]));
            }
            Ok(())
        };
        len("gate.weight".into(), &self.router, &[cfg.experts, h])?;
        match (&self.bias, cfg.scoring) {
            (Some(b), Scoring::Sigmoid) => {
                len("gate.e_score_correction_bias".into(), b, &[cfg.experts])?
            }
            (None, Scoring::Softmax) => {}
            (_, s) => {
                return Err(Error::invalid(format!(
                    "gate.e_score_correction_bias: present exactly with sigmoid scoring, not {s:?}"
                )))
            }
        }
        if self.experts.len() != cfg.experts {
            return Err(Error::shape(
                "experts",
                format!("{} experts", cfg.experts),
                &[self.experts.len()],
            ));
        }
        let sw = |base: String, w: &SwigluWeights, i: usize| -> Result<()> {
            len(format!("{base}.gate_proj.weight"), &w.gate, &[i, h])?;
            len(format!("{base}.up_proj.weight"), &w.up, &[i, h])?;
            len(format!("{base}.down_proj.weight"), &w.down, &[h, i])
        };
        for (e, w) in self.experts.iter().enumerate() {
            sw(format!("experts.{e}"), w, i)?;
        }
        match (&self.shared, cfg.n_shared) {
            (Some(w), n) if n > 0 => sw("shared_experts".into(), w, cfg.shared_intermediate()),
            (None, 0) => Ok(()),
            _ => Err(Error::invalid(format!(
                "shared_experts: present exactly when n_shared_experts > 0 (it is {})",
                cfg.n_shared
            ))),
        }
    }
}
