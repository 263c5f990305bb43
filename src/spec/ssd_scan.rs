//! Shapes of the Mamba-2 SSD scan (`mamba_chunk_scan_combined`): x, z, out (Bt, L, H, P); dt
//! (Bt, L, H); A, dt_bias (H); B, C (Bt, L, G, N) with G dividing H (head h reads group
//! h / (H/G)); D (H) or (H, P); initial_states, final_states (Bt, H, P, N). The packed form has
//! one token axis T in place of (Bt, L) and a state pool (Pool, H, P, N).
//!
//! Bt, L, H and P are read from x, N and G from B; every other input is checked against them.

use super::named;
use crate::error::{Error, Result};

/// Largest state size N the GPU kernels take.
pub const MAX_N: usize = 256;
/// Largest head dimension P the GPU kernels take.
pub const MAX_P: usize = 128;
/// Smallest chunk size.
pub const MIN_CHUNK: usize = 16;
/// Largest chunk size.
pub const MAX_CHUNK: usize = 256;
/// `mamba_ssm`'s (and Mamba-2's) default chunk size.
pub const DEFAULT_CHUNK: usize = 256;

/// How the skip weight D is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DLayout {
    /// (H): one weight per head.
    PerHead,
    /// (H, P): one weight per channel of each head.
    PerChannel,
}

/// Sizes of one SSD scan, derived from (and validated against) the input shapes. In the packed
/// form `batch` is 1 and `len` is the token count T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsdDims {
    /// Bt.
    pub batch: usize,
    /// L (steps per sequence).
    pub len: usize,
    /// H (heads).
    pub heads: usize,
    /// P (head dimension).
    pub head_dim: usize,
    /// G (groups of B and C).
    pub groups: usize,
    /// N (state size).
    pub n: usize,
}

impl SsdDims {
    /// Heads per group, H / G.
    pub fn heads_per_group(&self) -> usize {
        self.heads / self.groups
    }

    /// Elements of one state (H·P·N).
    pub fn state_len(&self) -> usize {
        self.heads * self.head_dim * self.n
    }
}

/// Shapes of the scan's inputs (`None` for an absent optional tensor).
#[derive(Clone, Copy, Debug)]
pub struct SsdShapes<'a> {
    /// x.
    pub x: &'a [usize],
    /// dt.
    pub dt: &'a [usize],
    /// A.
    pub a: &'a [usize],
    /// B.
    pub b: &'a [usize],
    /// C.
    pub c: &'a [usize],
    /// D.
    pub d: Option<&'a [usize]>,
    /// z.
    pub z: Option<&'a [usize]>,
    /// dt_bias.
    pub dt_bias: Option<&'a [usize]>,
    /// initial_states (batched form only).
    pub initial_states: Option<&'a [usize]>,
}

/// The token axes: ["Bt", "L"] for the batched form, ["T"] for the packed one.
fn spell(lead: &[&str], rest: &[&str]) -> String {
    format!("({})", [lead, rest].concat().join(", "))
}

/// Check the shapes with `lead` token axes (["Bt", "L"] or ["T"]); the D layout when D is given.
fn validate(s: &SsdShapes, lead: &[&'static str]) -> Result<(SsdDims, Option<DLayout>)> {
    let k = lead.len();
    let x = named("x", s.x).rank(k + 2, spell(lead, &["H", "P"]))?;
    if s.x.contains(&0) {
        return Err(Error::shape(
            "x",
            format!("{} with every size > 0", spell(lead, &["H", "P"])),
            s.x,
        ));
    }
    let (heads, p) = (s.x[k], s.x[k + 1]);
    let dt = named("dt", s.dt).rank(k + 1, spell(lead, &["H"]))?;
    for (i, d) in lead.iter().enumerate() {
        x.agree(i, dt, i, d)?;
    }
    x.agree(k, dt, k, "H")?;
    let a = named("A", s.a).rank(1, format!("(H) = [{heads}]"))?;
    x.agree(k, a, 0, "H")?;
    let b = named("B", s.b).rank(k + 2, spell(lead, &["G", "N"]))?;
    for (i, d) in lead.iter().enumerate() {
        x.agree(i, b, i, d)?;
    }
    let (g, n) = (s.b[k], s.b[k + 1]);
    if g == 0 || n == 0 || heads % g != 0 {
        return Err(Error::shape(
            "B",
            format!(
                "{} with G dividing H = {heads} and N > 0",
                spell(lead, &["G", "N"])
            ),
            s.b,
        ));
    }
    let c = named("C", s.c).rank(k + 2, spell(lead, &["G", "N"]))?;
    b.same_shape(c, &spell(lead, &["G", "N"]), &[lead, &["G", "N"]].concat())?;
    let d = match s.d {
        None => None,
        Some(d) if d == [heads] => Some(DLayout::PerHead),
        Some(d) if d == [heads, p] => Some(DLayout::PerChannel),
        Some(d) => {
            return Err(Error::shape(
                "D",
                format!("(H) = [{heads}] or (H, P) = [{heads}, {p}]"),
                d,
            ))
        }
    };
    if let Some(z) = s.z {
        x.same_shape(
            named("z", z),
            &spell(lead, &["H", "P"]),
            &[lead, &["H", "P"]].concat(),
        )?;
    }
    if let Some(bias) = s.dt_bias {
        let t = named("dt_bias", bias).rank(1, format!("(H) = [{heads}]"))?;
        x.agree(k, t, 0, "H")?;
    }
    let (batch, len) = if k == 2 {
        (s.x[0], s.x[1])
    } else {
        (1, s.x[0])
    };
    if let Some(h) = s.initial_states {
        let t = named("initial_states", h)
            .rank(4, format!("(Bt, H, P, N) = [{batch}, {heads}, {p}, {n}]"))?;
        if k == 2 {
            x.agree(0, t, 0, "Bt")?;
        }
        x.agree(k, t, 1, "H")?;
        x.agree(k + 1, t, 2, "P")?;
        b.agree(k + 1, t, 3, "N")?;
    }
    Ok((
        SsdDims {
            batch,
            len,
            heads,
            head_dim: p,
            groups: g,
            n,
        },
        d,
    ))
}

impl SsdDims {
    /// Derive the sizes from x (Bt, L, H, P) and B (Bt, L, G, N) and check every other shape
    /// against them; also the layout of D when given. A size that disagrees between two inputs
    /// is reported with both ([`Error::Mismatch`]).
    pub fn from_shapes(s: &SsdShapes) -> Result<(Self, Option<DLayout>)> {
        validate(s, &["Bt", "L"])
    }

    /// The packed form: x (T, H, P), dt (T, H), B and C (T, G, N), z (T, H, P); `batch` is 1
    /// and `len` is T. `initial_states` must be `None` (the packed form uses a state pool).
    pub fn from_packed_shapes(s: &SsdShapes) -> Result<(Self, Option<DLayout>)> {
        validate(s, &["T"])
    }
}

/// Error unless `chunk_size` is a multiple of 16 in 16..=256.
pub fn check_chunk_size(chunk_size: usize) -> Result<()> {
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) || chunk_size % 16 != 0 {
        return Err(Error::invalid(format!(
            "chunk_size must be a multiple of 16 in {MIN_CHUNK}..={MAX_CHUNK}, got {chunk_size}"
        )));
    }
    Ok(())
}

/// Whether `limit` asks for a clamp of dt: anything but `mamba_ssm`'s default (0, ∞), with
/// which `mamba_ssm` leaves dt unclamped (so that without softplus a negative dt passes).
pub fn clamps(limit: (f32, f32)) -> bool {
    limit != (0.0, f32::INFINITY)
}

/// Error unless `cu` holds `s + 1` non-decreasing token offsets from 0 to `t`.
pub fn check_cu_seqlens(cu: &[u32], s: usize, t: usize) -> Result<()> {
    if cu.len() != s + 1 || cu[0] != 0 || cu[s] as usize != t || cu.windows(2).any(|w| w[1] < w[0])
    {
        return Err(Error::invalid(format!(
            "cu_seqlens must be {} non-decreasing token offsets from 0 to T = {t}, got {cu:?}",
            s + 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes<'a>(b: &'a [usize], d: Option<&'a [usize]>) -> SsdShapes<'a> {
        SsdShapes {
            x: &[2, 7, 4, 3],
            dt: &[2, 7, 4],
            a: &[4],
            b,
            c: &[2, 7, 2, 5],
            d,
            z: None,
            dt_bias: None,
            initial_states: None,
        }
    }

    #[test]
    fn shapes_are_checked_and_named() {
        let (dims, d) = SsdDims::from_shapes(&shapes(&[2, 7, 2, 5], Some(&[4, 3]))).unwrap();
        assert_eq!(
            (dims.heads, dims.head_dim, dims.groups, dims.n),
            (4, 3, 2, 5)
        );
        assert_eq!(d, Some(DLayout::PerChannel));
        let err = SsdDims::from_shapes(&shapes(&[2, 7, 3, 5], None)).unwrap_err();
        assert!(err.to_string().contains("`B`"), "{err}");
        let err = SsdDims::from_shapes(&shapes(&[2, 7, 2, 6], None)).unwrap_err();
        assert!(err.to_string().contains("`C`"), "{err}");
        let err = SsdDims::from_shapes(&shapes(&[2, 7, 2, 5], Some(&[3]))).unwrap_err();
        assert!(err.to_string().contains("`D`"), "{err}");
        assert!(check_chunk_size(48).is_ok());
        assert!(check_chunk_size(40).is_err());
        assert!(check_chunk_size(512).is_err());
    }
}
