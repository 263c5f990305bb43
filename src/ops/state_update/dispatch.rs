//! Recording one decode step, shared by both forms: the uniform block (its WGSL twin is checked
//! by the contract test), the mode bits, and the dispatch with its scratch copies.

use super::{row_layout, StateUpdate, INTERFACE, SHADER, WG};
use crate::error::{Error, Result};
use crate::runtime::{Batch, DType, Tensor, View};
use crate::shader::{Flag, Flags};
use crate::spec::state_update::check_dt_limit;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Uniforms {
    rows: u32,
    dim: u32,
    n: u32,
    batch: u32,
    b_groups: u32,
    c_groups: u32,
    pool: u32,
    flags: u32,
    p_d: u32,
    p_bias: u32,
    p_slot: u32,
    p_dt: u32,
    x_off: u32,
    x_rs: u32,
    z_off: u32,
    z_rs: u32,
    o_off: u32,
    o_rs: u32,
    b_off: u32,
    b_rs: u32,
    b_gs: u32,
    c_off: u32,
    c_rs: u32,
    c_gs: u32,
    head_dim: u32,
    x_hs: u32,
    z_hs: u32,
    o_hs: u32,
    dt_off: u32,
    dt_rs: u32,
    d_hs: u32,
    d_ps: u32,
    dt_lo: f32,
    dt_hi: f32,
    _pad0: u32,
    _pad1: u32,
}

const HAS_D: u32 = 1;
const HAS_Z: u32 = 2;
const HAS_BIAS: u32 = 4;
const SOFTPLUS: u32 = 8;
const HAS_SLOTS: u32 = 16;
const LIMIT: u32 = 64;

/// Where the form-specific inputs go: the Mamba-1 form copies dt into the scratch and binds A
/// (D, N); the heads form copies A (H) into the scratch and binds dt's buffer, read in place.
#[derive(Clone, Copy)]
pub(super) enum Form<'a> {
    Channels {
        dt: &'a View,
        dt_off: u32,
        a: &'a Tensor,
    },
    Heads {
        dt: &'a View,
        dt_off: u32,
        dt_rs: u32,
        a: &'a Tensor,
    },
}

/// One validated step of either form, in the kernel's terms: H heads of P channels (the
/// Mamba-1 form: H = D, P = 1); layouts are (offset, row stride, head stride) in elements.
pub(super) struct Step<'a> {
    pub(super) state: &'a Tensor,
    pub(super) x: &'a View,
    pub(super) x_layout: (u32, u32, u32),
    pub(super) b: &'a View,
    pub(super) c: &'a View,
    pub(super) z: Option<(&'a View, (u32, u32, u32))>,
    pub(super) out: &'a View,
    pub(super) out_layout: (u32, u32, u32),
    pub(super) d: Option<&'a Tensor>,
    /// D's element of (h, p) is at h·d_hs + p·d_ps.
    pub(super) d_strides: (u32, u32),
    pub(super) dt_bias: Option<&'a Tensor>,
    pub(super) slots: Option<&'a Tensor>,
    pub(super) dt_softplus: bool,
    pub(super) limit: Option<(f32, f32)>,
    pub(super) form: Form<'a>,
    pub(super) batch: usize,
    pub(super) heads: usize,
    pub(super) head_dim: usize,
    pub(super) n: usize,
    pub(super) pool: usize,
    pub(super) b_groups: usize,
    pub(super) c_groups: usize,
}

impl StateUpdate {
    /// The shared tail of both forms: the storage variant, the scratch copies, the uniforms
    /// and the dispatch (everything shape-related is validated by the callers).
    pub(super) fn dispatch(&self, batch: &mut Batch, s: &Step) -> Result<()> {
        let act = s.x.dtype();
        let (bt, n) = (s.batch, s.n);
        let dim = s.heads * s.head_dim;
        let (b_off, b_rs, b_gs) = row_layout(s.b, "B")?;
        let (c_off, c_rs, c_gs) = row_layout(s.c, "C")?;
        let ((z_off, z_rs, z_hs), z_view) = match s.z {
            Some((v, l)) => (l, v),
            None => ((0, 0, 0), s.x),
        };
        let heads_form = matches!(s.form, Form::Heads { .. });
        // Binding 3: A (D, N) in the Mamba-1 form, dt's buffer in the heads form.
        let adt = match s.form {
            Form::Channels { a, .. } => a,
            Form::Heads { dt, .. } => dt.tensor(),
        };
        // wgpu refuses a buffer bound writable and read in one dispatch.
        let reads = [
            ("x", Some(s.x.tensor())),
            (if heads_form { "dt" } else { "A" }, Some(adt)),
            ("B", Some(s.b.tensor())),
            ("C", Some(s.c.tensor())),
            ("z", s.z.map(|(v, _)| v.tensor())),
        ];
        for (written, t) in [("out", s.out.tensor()), ("state", s.state)] {
            for (name, r) in reads {
                if r.is_some_and(|r| r.buffer() == t.buffer()) {
                    return Err(Error::invalid(format!(
                        "view `{written}` shares a buffer with `{name}`: state_update writes \
                         `{written}` while it reads `{name}`"
                    )));
                }
            }
        }
        if s.out.tensor().buffer() == s.state.buffer() {
            return Err(Error::invalid(
                "view `out` shares a buffer with `state`: both are written",
            ));
        }
        if let Some(limit) = s.limit {
            check_dt_limit(limit)?;
        }
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "x", act)?.union(crate::ops::storage_flags_b(
            gpu,
            "state",
            s.state.dtype(),
        )?);
        // An f32 state whose rows start on 16 bytes (N % 4 = 0) is read and written as vec4.
        let vec4 = s.state.dtype() == DType::F32 && n % 4 == 0;
        // Where that pays, the vec4 kernel's subgroups also share B and C by broadcast.
        let shared = vec4 && crate::ops::shares_loads_by_subgroup(gpu);
        let storage = match (vec4, shared) {
            (true, true) => storage.with(Flag::Vec4).with(Flag::Subgroup),
            (true, false) => storage.with(Flag::Vec4),
            _ => storage,
        };
        // The subgroup-sharing kernel (CPU devices) walks several requests per invocation, so
        // that a channel's A row (in registers for N ≤ 16 in the Mamba-1 form), dt_bias and D
        // load once for them all (see `requests_per_invocation`).
        let nq = if shared && !heads_form && n <= 16 {
            n / 4
        } else {
            0
        };
        let reqs = self.walk(gpu, bt, dim, n, s.state.dtype(), heads_form);
        let mut constants = Vec::new();
        if nq > 0 {
            constants.push(("NQ", nq as f64));
        }
        if reqs > 1 {
            constants.push(("REQS", reqs as f64));
        }
        if heads_form {
            constants.push(("HEADS_FORM", 1.0));
        }
        let kernel = if storage == Flags::NONE && constants.is_empty() {
            self.kernel.clone()
        } else {
            gpu.kernel(&SHADER.variant(storage, INTERFACE), &constants)?
        };
        let rows = bt * dim;
        if s.pool * dim * n >= u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("state of {} elements", s.pool * dim * n),
                detail: "the kernel indexes with 32-bit integers".into(),
            });
        }
        // Row indices are divided in f32 (common/divide), exact below 2^21.
        if dim >= 1 << 21 {
            return Err(Error::Limit {
                what: format!("D = {dim} channels"),
                detail: "the kernel's index arithmetic is exact below 2^21".into(),
            });
        }
        let max_bind = gpu.max_binding_bytes();
        if s.state.size_bytes() > max_bind {
            return Err(Error::Limit {
                what: format!("state of shape {:?}", s.state.shape()),
                detail: format!("max_storage_buffer_binding_size = {max_bind}"),
            });
        }
        // One invocation per row, looping over its N states: on lavapipe (Bt=1 D=2048 N=16)
        // 0.3-0.9 ms against 4-5 ms with 16 per row and 1.4 ms with 4, whose split rows cost a
        // barrier and a shared-memory sum per workgroup.
        // The scratch: D (D, H or H·P) | dt_bias (D or H) | slots (Bt) | dt (Bt·D) or A (H).
        let d_len = s.d.map_or(0, Tensor::len);
        let p_d = 0;
        let p_bias = dim; // D has at most D = H·P elements
        let p_slot = p_bias + s.heads;
        let p_dt = p_slot + bt;
        let pk_len = p_dt + if heads_form { s.heads } else { rows };
        let scratch = {
            let mut slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(t) if t.len() >= pk_len => t.clone(),
                _ => {
                    let t = gpu.empty(&[pk_len.next_power_of_two()], DType::F32)?;
                    *slot = Some(t.clone());
                    t
                }
            }
        };
        // Workgroups of `reqs` requests each: (⌈D / rows per workgroup⌉, ⌈Bt / reqs⌉).
        let max_groups = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let grid = [dim.div_ceil(WG), bt.div_ceil(reqs)];
        if grid.iter().any(|&g| g > max_groups) {
            return Err(Error::Limit {
                what: format!("a grid of {grid:?} workgroups (D = {dim}, Bt = {bt})"),
                detail: format!("max_compute_workgroups_per_dimension = {max_groups}"),
            });
        }
        if let Some(d) = s.d {
            batch.copy(d, 0, &scratch, (p_d * 4) as u64, (d_len * 4) as u64)?;
        }
        if let Some(bias) = s.dt_bias {
            batch.copy(bias, 0, &scratch, (p_bias * 4) as u64, (s.heads * 4) as u64)?;
        }
        if let Some(slots) = s.slots {
            batch.copy(slots, 0, &scratch, (p_slot * 4) as u64, (bt * 4) as u64)?;
        }
        let (dt_off, dt_rs) = match s.form {
            Form::Channels { dt, dt_off, .. } => {
                // dt's raw bytes (halves two to a word), rounded up to whole words: tensors are
                // padded.
                let dt_bytes = (rows * act.size()).next_multiple_of(4) as u64;
                let start = dt_off as u64 * act.size() as u64;
                batch.copy(dt.tensor(), start, &scratch, (p_dt * 4) as u64, dt_bytes)?;
                (0, 0)
            }
            Form::Heads {
                dt_off, dt_rs, a, ..
            } => {
                batch.copy(a, 0, &scratch, (p_dt * 4) as u64, (s.heads * 4) as u64)?;
                (dt_off, dt_rs)
            }
        };
        let mut flags = 0;
        for (on, bit) in [
            (s.d.is_some(), HAS_D),
            (s.z.is_some(), HAS_Z),
            (s.dt_bias.is_some(), HAS_BIAS),
            (s.dt_softplus, SOFTPLUS),
            (s.slots.is_some(), HAS_SLOTS),
            (s.limit.is_some(), LIMIT),
        ] {
            if on {
                flags |= bit;
            }
        }
        let (dt_lo, dt_hi) = s.limit.unwrap_or((0.0, f32::INFINITY));
        let (x_off, x_rs, x_hs) = s.x_layout;
        let (o_off, o_rs, o_hs) = s.out_layout;
        let uniforms = Uniforms {
            rows: rows as u32,
            dim: dim as u32,
            n: n as u32,
            batch: bt as u32,
            b_groups: s.b_groups as u32,
            c_groups: s.c_groups as u32,
            pool: s.pool as u32,
            flags,
            p_d: p_d as u32,
            p_bias: p_bias as u32,
            p_slot: p_slot as u32,
            p_dt: p_dt as u32,
            x_off,
            x_rs,
            z_off,
            z_rs,
            o_off,
            o_rs,
            b_off,
            b_rs,
            b_gs,
            c_off,
            c_rs,
            c_gs,
            head_dim: s.head_dim as u32,
            x_hs,
            z_hs,
            o_hs,
            dt_off,
            dt_rs,
            d_hs: s.d_strides.0,
            d_ps: s.d_strides.1,
            dt_lo,
            dt_hi,
            _pad0: 0,
            _pad1: 0,
        };
        batch.dispatch_grid(
            &kernel,
            &uniforms,
            &[
                s.state.into(),
                s.x.tensor().into(),
                adt.into(),
                (&scratch).into(),
                s.b.tensor().into(),
                s.c.tensor().into(),
                z_view.tensor().into(),
                s.out.tensor().into(),
            ],
            [grid[0] as u32, grid[1] as u32, 1],
        )
    }
}

/// The automatic requests per invocation of the subgroup-sharing kernel: up to 8 (A's row, dt_bias and D are
/// then loaded once per channel for 8 requests instead of once per request), halved while the
/// grid would give a CPU device's threads fewer than two workgroups each (`groups_x` workgroups
/// per request). GPUs keep one request per invocation: there the grid's size, not the loads of
/// A, sets the pace at decode sizes.
pub(super) fn requests_per_invocation(bt: usize, groups_x: usize, threads: usize) -> usize {
    let mut reqs = bt.clamp(1, 8);
    while reqs > 1 && groups_x * bt.div_ceil(reqs) < 2 * threads {
        reqs /= 2;
    }
    reqs
}
