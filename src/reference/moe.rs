//! CPU reference of `moe`, DeepSeek-V2/V3's mixture of experts in f64, written after
//! transformers' `DeepseekV2TopkRouter`/`DeepseekV2Moe` and `DeepseekV3TopkRouter`/
//! `DeepseekV3MoE`:
//!
//! ```text
//! logits = x · gateᵀ                                          (T, E)
//! V2:  s = softmax(logits)
//!      greedy:               top-k of s
//!      group_limited_greedy: group score = max of s in the group; keep the topk_group best
//!                            groups, set the other experts' s to 0; top-k of s
//!      w = s of the chosen
//! V3:  s = sigmoid(logits); c = s + e_score_correction_bias
//!      group score = sum of the two largest c in the group; keep the topk_group best groups,
//!      set the other experts' c to −∞; top-k of c; w = s (uncorrected) of the chosen
//! if norm_topk_prob: w /= Σ w + 1e-20
//! w *= routed_scaling_factor
//! y = Σ_j w_j · down_{e_j}(silu(gate_{e_j} x) ⊙ up_{e_j} x) + shared(x)
//! ```
//!
//! Ties: every top-k here takes the largest value first and, among equal values, the lowest
//! index. torch.topk's order among equal values is not specified (on CPU it comes from a
//! partial sort and is *not* lowest-index-first), so for exactly tied scores transformers may
//! pick another of the tied experts; random real-valued routers never tie.

use crate::spec::moe::{MoeConfig, MoeHostWeights, Scoring, SwigluWeights, TopkMethod};

/// The experts and weights chosen for every token.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// (T, k) expert ids, each token's in choice order (largest choice score first).
    pub experts: Vec<usize>,
    /// (T, k) weights of the chosen, after normalisation and scaling.
    pub weights: Vec<f64>,
}

/// The indices of the `k` largest of `v`, largest first; among equal values the lowest index.
pub fn top_k(v: &[f64], k: usize) -> Vec<usize> {
    let mut taken = vec![false; v.len()];
    let mut out = Vec::with_capacity(k);
    for _ in 0..k.min(v.len()) {
        let mut best: Option<usize> = None;
        for (i, &x) in v.iter().enumerate() {
            if !taken[i] && best.is_none_or(|b| x > v[b]) {
                best = Some(i);
            }
        }
        let b = best.expect("k ≤ len");
        taken[b] = true;
        out.push(b);
    }
    out
}

/// Router logits (T, E) = x (T, hidden) · routerᵀ, in f64 (x f32 or f64).
pub fn router_logits<T: Copy + Into<f64>>(cfg: &MoeConfig, router: &[f32], x: &[T]) -> Vec<f64> {
    let h = cfg.hidden;
    let t = x.len() / h;
    let mut out = Vec::with_capacity(t * cfg.experts);
    for row in x.chunks(h) {
        for e in 0..cfg.experts {
            let w = &router[e * h..(e + 1) * h];
            out.push(row.iter().zip(w).map(|(&a, &b)| a.into() * b as f64).sum());
        }
    }
    out
}

/// One token's choice: (expert ids, weights) from its E logits.
pub fn route_token(
    cfg: &MoeConfig,
    logits: &[f64],
    bias: Option<&[f32]>,
) -> (Vec<usize>, Vec<f64>) {
    let e_n = cfg.experts;
    let scores: Vec<f64> = match cfg.scoring {
        Scoring::Softmax => {
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ex: Vec<f64> = logits.iter().map(|&l| (l - m).exp()).collect();
            let sum: f64 = ex.iter().sum();
            ex.iter().map(|&v| v / sum).collect()
        }
        Scoring::Sigmoid => logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect(),
    };
    let mut choice: Vec<f64> = match (cfg.scoring, bias) {
        (Scoring::Sigmoid, Some(b)) => scores.iter().zip(b).map(|(&s, &b)| s + b as f64).collect(),
        _ => scores.clone(),
    };
    if cfg.grouped() {
        let gs = cfg.group_size();
        let group_scores: Vec<f64> = choice
            .chunks(gs)
            .map(|g| match cfg.method {
                TopkMethod::NoauxTc => top_k(g, 2).iter().map(|&i| g[i]).sum(),
                _ => g.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            })
            .collect();
        let kept = top_k(&group_scores, cfg.topk_group);
        let masked = match cfg.method {
            TopkMethod::NoauxTc => f64::NEG_INFINITY,
            _ => 0.0,
        };
        for (e, c) in choice.iter_mut().enumerate().take(e_n) {
            if !kept.contains(&(e / gs)) {
                *c = masked;
            }
        }
    }
    let ids = top_k(&choice, cfg.top_k);
    let mut w: Vec<f64> = ids.iter().map(|&e| scores[e]).collect();
    if cfg.norm_topk_prob {
        let denom = w.iter().sum::<f64>() + 1e-20;
        w.iter_mut().for_each(|v| *v /= denom);
    }
    w.iter_mut().for_each(|v| *v *= cfg.routed_scaling_factor);
    (ids, w)
}

/// The routing of every token of x (T, hidden).
pub fn route<T: Copy + Into<f64>>(cfg: &MoeConfig, weights: &MoeHostWeights, x: &[T]) -> Routing {
    let logits = router_logits(cfg, &weights.router, x);
    let mut r = Routing {
        experts: Vec::new(),
        weights: Vec::new(),
    };
    for l in logits.chunks(cfg.experts) {
        let (ids, w) = route_token(cfg, l, weights.bias.as_deref());
        r.experts.extend(ids);
        r.weights.extend(w);
    }
    r
}

/// silu(v) = v · sigmoid(v).
fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// One SwiGLU expert on one row: down(silu(gate·x) ⊙ up·x), intermediate `inter`.
pub fn swiglu<T: Copy + Into<f64>>(
    w: &SwigluWeights,
    hidden: usize,
    inter: usize,
    x: &[T],
) -> Vec<f64> {
    let dot = |m: &[f32], r: usize, v: &[f64]| -> f64 {
        m[r * v.len()..(r + 1) * v.len()]
            .iter()
            .zip(v)
            .map(|(&a, &b)| a as f64 * b)
            .sum()
    };
    let xd: Vec<f64> = x.iter().map(|&v| v.into()).collect();
    let h: Vec<f64> = (0..inter)
        .map(|i| silu(dot(&w.gate, i, &xd)) * dot(&w.up, i, &xd))
        .collect();
    (0..hidden).map(|n| dot(&w.down, n, &h)).collect()
}

/// The MoE block: y (T, hidden) for x (T, hidden), f32 or f64.
pub fn moe<T: Copy + Into<f64>>(cfg: &MoeConfig, weights: &MoeHostWeights, x: &[T]) -> Vec<f64> {
    let (h, k) = (cfg.hidden, cfg.top_k);
    let r = route(cfg, weights, x);
    let mut y = Vec::with_capacity(x.len());
    for (t, row) in x.chunks(h).enumerate() {
        let mut acc = vec![0.0f64; h];
        for j in 0..k {
            let e = r.experts[t * k + j];
            let out = swiglu(&weights.experts[e], h, cfg.intermediate, row);
            for (a, o) in acc.iter_mut().zip(out) {
                *a += r.weights[t * k + j] * o;
            }
        }
        if let Some(s) = &weights.shared {
            let out = swiglu(s, h, cfg.shared_intermediate(), row);
            acc.iter_mut().zip(out).for_each(|(a, o)| *a += o);
        }
        y.extend(acc);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_prefers_lowest_index_among_ties() {
        assert_eq!(top_k(&[1.0, 2.0, 2.0, 2.0, 0.0, 2.0], 2), vec![1, 2]);
        assert_eq!(top_k(&[0.0; 8], 3), vec![0, 1, 2]);
        assert_eq!(top_k(&[0.5, f64::NEG_INFINITY, 3.0], 3), vec![2, 0, 1]);
    }
}
