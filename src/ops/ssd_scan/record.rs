//! Recording one SSD scan: validate everything, then copy the small parameters and tables into
//! the op's scratch and record five dispatches per window of [`super::plan`].

use super::plan::{chunk_plan, chunks_per_window, Plan};
use super::*;
use crate::ops::selective_scan::window;
use crate::runtime::view::contiguous_strides;
use crate::runtime::Binding;
use crate::spec::ssd_scan::clamps;

/// The batched inputs' shapes.
pub(super) fn shapes_of<'a>(i: &'a SsdInputs) -> SsdShapes<'a> {
    SsdShapes {
        x: i.x.shape(),
        dt: i.dt.shape(),
        a: i.a.shape(),
        b: i.b.shape(),
        c: i.c.shape(),
        d: i.d.map(|t| t.shape()),
        z: i.z.map(|t| t.shape()),
        dt_bias: i.dt_bias.map(|t| t.shape()),
        initial_states: i.initial_states.map(|t| t.shape()),
    }
}

/// Error unless writing through `v` touches each element at most once: sorted by stride, each
/// dimension's stride must pass the furthest element the smaller ones reach.
fn expect_disjoint(v: &View, name: &str) -> Result<()> {
    let mut dims: Vec<(usize, usize)> = v
        .shape()
        .iter()
        .zip(v.strides())
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s, n))
        .collect();
    dims.sort();
    let mut reach = 0;
    for (s, n) in dims {
        if s <= reach {
            return Err(Error::invalid(format!(
                "view `{name}` of shape {:?} with strides {:?} would write an element twice",
                v.shape(),
                v.strides()
            )));
        }
        reach += (n - 1) * s;
    }
    Ok(())
}

/// A validated packed call, ready to record.
struct Prepared<'a> {
    dims: SsdDims,
    d_layout: Option<DLayout>,
    inputs: SsdPackedInputs<'a>,
    out: &'a View,
    pool: &'a Tensor,
    plan: Plan,
}

impl SsdScan {
    /// Validate a packed call (everything but NaN) and plan it; nothing is recorded.
    fn prepare<'a>(
        &self,
        gpu: &Gpu,
        inputs: &SsdPackedInputs<'a>,
        out: &'a View,
        pool: &'a Tensor,
        fresh_start: bool,
    ) -> Result<Prepared<'a>> {
        let (dims, d_layout) = SsdDims::from_packed_shapes(&SsdShapes {
            x: inputs.x.shape(),
            dt: inputs.dt.shape(),
            a: inputs.a.shape(),
            b: inputs.b.shape(),
            c: inputs.c.shape(),
            d: inputs.d.map(|t| t.shape()),
            z: inputs.z.map(|v| v.shape()),
            dt_bias: inputs.dt_bias.map(|t| t.shape()),
            initial_states: None,
        })?;
        let SsdDims {
            len: t,
            heads: h,
            head_dim: p,
            n,
            ..
        } = dims;
        for (name, v) in [
            ("x", Some(inputs.x)),
            ("dt", Some(inputs.dt)),
            ("B", Some(inputs.b)),
            ("C", Some(inputs.c)),
            ("z", inputs.z),
        ] {
            if let Some(v) = v {
                v.tensor().expect_dtype(name, DType::F32)?;
            }
        }
        for (name, tensor) in [
            ("A", Some(inputs.a)),
            ("D", inputs.d),
            ("dt_bias", inputs.dt_bias),
        ] {
            if let Some(tensor) = tensor {
                tensor.expect_dtype(name, DType::F32)?;
            }
        }
        if n > MAX_N {
            return Err(Error::shape(
                "B",
                format!("(T, G, N) with N ≤ {MAX_N} (the GPU kernels' limit)"),
                inputs.b.shape(),
            ));
        }
        if p > MAX_P {
            return Err(Error::shape(
                "x",
                format!("(T, H, P) with P ≤ {MAX_P} (the GPU kernels' limit)"),
                inputs.x.shape(),
            ));
        }
        check_chunk_size(inputs.chunk_size)?;
        let (lo, hi) = inputs.dt_limit;
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::invalid(format!(
                "dt_limit must be a range lo ≤ hi, got ({lo}, {hi})"
            )));
        }
        out.expect("out", "(T, H, P)", &[t, h, p], DType::F32)?;
        let [rows, ..] = pool.shape()[..] else {
            return Err(Error::shape("state_pool", "(Pool, H, P, N)", pool.shape()));
        };
        pool.expect(
            "state_pool",
            "(Pool, H, P, N)",
            &[rows, h, p, n],
            DType::F32,
        )?;
        let s = inputs.slots.len();
        crate::spec::ssd_scan::check_cu_seqlens(inputs.cu_seqlens, s, t)?;
        let mut seen = vec![false; rows];
        for &slot in inputs.slots {
            let slot = slot as usize;
            if slot >= rows || std::mem::replace(&mut seen[slot], true) {
                return Err(Error::invalid(format!(
                    "slots {:?} must be distinct rows of the state pool (Pool = {rows})",
                    inputs.slots
                )));
            }
        }
        expect_disjoint(out, "out")?;
        let reads = [
            ("x", Some(inputs.x.tensor())),
            ("dt", Some(inputs.dt.tensor())),
            ("B", Some(inputs.b.tensor())),
            ("C", Some(inputs.c.tensor())),
            ("z", inputs.z.map(|v| v.tensor())),
            ("A", Some(inputs.a)),
            ("D", inputs.d),
            ("dt_bias", inputs.dt_bias),
        ];
        for (written, buf) in [("out", out.tensor()), ("state_pool", pool)] {
            for (name, r) in reads {
                if r.is_some_and(|r| r.buffer() == buf.buffer()) {
                    return Err(Error::invalid(format!(
                        "`{written}` shares its buffer with `{name}`: the scan cannot write where \
                         it reads"
                    )));
                }
            }
        }
        if out.tensor().buffer() == pool.buffer() {
            return Err(Error::invalid(
                "`out` and `state_pool` share one buffer: they must be distinct tensors",
            ));
        }
        for (name, tensor) in [("state_pool", pool)] {
            if tensor.size_bytes() > gpu.max_binding_bytes() {
                return Err(limit(
                    format!("`{name}` of shape {:?} in the SSD scan", tensor.shape()),
                    format!(
                        "max_storage_buffer_binding_size = {}",
                        gpu.max_binding_bytes()
                    ),
                ));
            }
        }
        if rows * dims.state_len() >= u32::MAX as usize {
            return Err(limit(
                format!("state pool of {} elements", rows * dims.state_len()),
                "the kernels index with 32-bit integers".into(),
            ));
        }
        let mut views = vec![
            ("x", inputs.x),
            ("dt", inputs.dt),
            ("B", inputs.b),
            ("C", inputs.c),
            ("out", out),
        ];
        if let Some(z) = inputs.z {
            views.push(("z", z));
        }
        for (name, v) in &views {
            v.index_u32(name)?;
        }
        let q = inputs.chunk_size;
        let per_window = chunks_per_window(gpu, &dims, q, &views)?;
        let plan = chunk_plan(inputs.cu_seqlens, inputs.slots, q, fresh_start, per_window);
        Ok(Prepared {
            dims,
            d_layout,
            inputs: *inputs,
            out,
            pool,
            plan,
        })
    }

    /// Record the packed scan: `out` (T, H, P) is written and the pool rows of `slots` updated
    /// (sequence s starts from row `slots[s]` of `state_pool` (Pool, H, P, N) f32 and leaves its
    /// final state there; callers zero a fresh row). Everything is validated first (shapes,
    /// dtypes, strides, slots, cu_seqlens, chunk size, N and P limits; not NaN); on error
    /// nothing is recorded.
    pub fn record_packed(
        &self,
        batch: &mut Batch,
        inputs: &SsdPackedInputs,
        out: &View,
        state_pool: &Tensor,
    ) -> Result<()> {
        let prepared = self.prepare(batch.gpu(), inputs, out, state_pool, false)?;
        self.emit(batch, &prepared)
    }

    /// Record the batched scan: `out` (Bt, L, H, P) and `final_states` (Bt, H, P, N), both f32,
    /// are written; sequence b starts from `initial_states[b]` (zero when absent; passing
    /// `final_states` itself is allowed). Validated first; on error nothing is recorded.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &SsdInputs,
        out: &Tensor,
        final_states: &Tensor,
    ) -> Result<()> {
        let (dims, _) = SsdDims::from_shapes(&shapes_of(inputs))?;
        let SsdDims {
            batch: bt,
            len: l,
            heads: h,
            head_dim: p,
            groups: g,
            n,
        } = dims;
        let t = bt * l;
        out.expect("out", "(Bt, L, H, P)", &[bt, l, h, p], DType::F32)?;
        final_states.expect("final_states", "(Bt, H, P, N)", &[bt, h, p, n], DType::F32)?;
        if let Some(init) = inputs.initial_states {
            init.expect_dtype("initial_states", DType::F32)?;
        }
        let flat = |tensor: &Tensor, shape: &[usize]| {
            View::as_strided(tensor, 0, shape, &contiguous_strides(shape))
        };
        let x = flat(inputs.x, &[t, h, p])?;
        let dt = flat(inputs.dt, &[t, h])?;
        let b = flat(inputs.b, &[t, g, n])?;
        let c = flat(inputs.c, &[t, g, n])?;
        let z = inputs.z.map(|z| flat(z, &[t, h, p])).transpose()?;
        let out_v = flat(out, &[t, h, p])?;
        let cu: Vec<u32> = (0..=bt).map(|i| (i * l) as u32).collect();
        let slots: Vec<u32> = (0..bt as u32).collect();
        let packed = SsdPackedInputs {
            x: &x,
            dt: &dt,
            a: inputs.a,
            b: &b,
            c: &c,
            d: inputs.d,
            z: z.as_ref(),
            dt_bias: inputs.dt_bias,
            dt_softplus: inputs.dt_softplus,
            dt_limit: inputs.dt_limit,
            chunk_size: inputs.chunk_size,
            cu_seqlens: &cu,
            slots: &slots,
        };
        let fresh = inputs.initial_states.is_none();
        let prepared = self.prepare(batch.gpu(), &packed, &out_v, final_states, fresh)?;
        if let Some(init) = inputs.initial_states {
            if init.buffer() != final_states.buffer() {
                batch.copy(init, 0, final_states, 0, final_states.size_bytes())?;
            }
        }
        self.emit(batch, &prepared)
    }

    /// Copy the parameters and tables into the scratch and record the windows' dispatches.
    fn emit(&self, batch: &mut Batch, pr: &Prepared) -> Result<()> {
        let gpu = batch.gpu();
        let inputs = &pr.inputs;
        let plan = &pr.plan;
        if plan.windows.is_empty() {
            return Ok(()); // no tokens: every pool row keeps its state
        }
        let SsdDims {
            heads: h,
            head_dim: p,
            groups: g,
            n,
            ..
        } = pr.dims;
        let q = inputs.chunk_size;

        // The table: A, dt_bias, D, then the chunk and segment tables.
        let p_bias = h;
        let p_d = 2 * h;
        let p_chunks = p_d + h * p;
        let p_segs = p_chunks + plan.chunks.len();
        let table = self.scratch_of(gpu, 0, p_segs + plan.segs.len())?;
        batch.copy(inputs.a, 0, &table, 0, (h * 4) as u64)?;
        if let Some(bias) = inputs.dt_bias {
            batch.copy(bias, 0, &table, (p_bias * 4) as u64, (h * 4) as u64)?;
        }
        if let Some(d) = inputs.d {
            batch.copy(d, 0, &table, (p_d * 4) as u64, d.size_bytes())?;
        }
        batch.write(&table, p_chunks, &plan.chunks)?;
        batch.write(&table, p_segs, &plan.segs)?;

        let nk = plan.max_nk;
        let dtcum_len = nk * h * 2 * q;
        let cb_len = nk * g * q * q;
        let states_len = nk * h * p * n;
        let dtcum = self.scratch_of(gpu, 1, dtcum_len)?;
        let cb = self.scratch_of(gpu, 2, cb_len)?;
        let states = self.scratch_of(gpu, 3, states_len)?;
        let head = |t: &Tensor, len: usize| Binding::range(t, 0, (len * 4) as u64);
        let (dtcum_b, cb_b, states_b) = (
            head(&dtcum, dtcum_len),
            head(&cb, cb_len),
            head(&states, states_len),
        );
        let table_b: Binding = (&table).into();
        let pool_b: Binding = pr.pool.into();

        let mut flags = 0;
        for (on, bit) in [
            (inputs.d.is_some(), HAS_D),
            (pr.d_layout == Some(DLayout::PerChannel), D_PER_P),
            (inputs.z.is_some(), HAS_Z),
            (inputs.dt_bias.is_some(), HAS_BIAS),
            (inputs.dt_softplus, SOFTPLUS),
            (clamps(inputs.dt_limit), CLAMP),
        ] {
            if on {
                flags |= bit;
            }
        }
        let (qt, pt, nt) = (q.div_ceil(TILE), p.div_ceil(TILE), n.div_ceil(TILE));
        for w in &plan.windows {
            // Each view bound over the window's tokens, its offset rebased to the binding and
            // to the window's first token.
            let bind = |v: &View| -> Result<(Binding, [u32; 4])> {
                let st = v.strides();
                let first = v.offset() + w.tok0 * st[0];
                let inner: usize = v.shape()[1..]
                    .iter()
                    .zip(&st[1..])
                    .map(|(s, t)| (s - 1) * t)
                    .sum();
                let end = v.offset() + (w.tok1 - 1) * st[0] + inner + 1;
                let (b, start) = window(gpu, v.tensor(), first, end)?;
                let mut view = [0u32; 4];
                view[0] = (first - start as usize) as u32;
                for (k, &s) in st.iter().enumerate() {
                    view[k + 1] = s as u32;
                }
                Ok((b, view))
            };
            let (x_b, x_view) = bind(inputs.x)?;
            let (dt_b, dt_view) = bind(inputs.dt)?;
            let (b_b, b_view) = bind(inputs.b)?;
            let (c_b, c_view) = bind(inputs.c)?;
            let (o_b, o_view) = bind(pr.out)?;
            let (z_b, z_view) = match inputs.z {
                Some(z) => bind(z)?,
                None => (x_b.clone(), x_view),
            };
            let u = Uniforms {
                heads: h as u32,
                head_dim: p as u32,
                n: n as u32,
                groups: g as u32,
                q: q as u32,
                nk: w.nk as u32,
                k0: w.k0 as u32,
                nseg: w.nseg as u32,
                seg0: w.seg0 as u32,
                flags,
                p_a: 0,
                p_bias: p_bias as u32,
                p_d: p_d as u32,
                p_chunks: p_chunks as u32,
                p_segs: p_segs as u32,
                tok0: w.tok0 as u32,
                lo: inputs.dt_limit.0,
                hi: inputs.dt_limit.1,
                pool: pr.pool.shape()[0] as u32,
                hpg: (h / g) as u32,
                x_view,
                dt_view,
                b_view,
                c_view,
                z_view,
                o_view,
            };
            let groups = |count: usize| -> Result<u32> {
                u32::try_from(count).map_err(|_| {
                    limit(
                        format!("{count} workgroups in the SSD scan"),
                        "more than 2^32".into(),
                    )
                })
            };
            batch.dispatch(
                &self.cumsum,
                &u,
                &[table_b.clone(), dt_b, dtcum_b.clone()],
                groups((w.nk * h).div_ceil(CUMSUM_WG))?,
            )?;
            batch.dispatch(
                &self.cb,
                &u,
                &[table_b.clone(), b_b.clone(), c_b.clone(), cb_b.clone()],
                groups(w.nk * g * qt * qt)?,
            )?;
            batch.dispatch(
                &self.state,
                &u,
                &[
                    table_b.clone(),
                    x_b.clone(),
                    b_b,
                    dtcum_b.clone(),
                    states_b.clone(),
                ],
                groups(w.nk * h * pt * nt)?,
            )?;
            batch.dispatch(
                &self.passing,
                &u,
                &[
                    table_b.clone(),
                    dtcum_b.clone(),
                    states_b.clone(),
                    pool_b.clone(),
                ],
                groups((w.nseg * h * p * n).div_ceil(PASSING_WG))?,
            )?;
            batch.dispatch(
                &self.scan,
                &u,
                &[
                    table_b.clone(),
                    x_b,
                    c_b,
                    z_b,
                    dtcum_b.clone(),
                    cb_b.clone(),
                    states_b.clone(),
                    o_b,
                ],
                groups(w.nk * h * qt * pt)?,
            )?;
        }
        Ok(())
    }
}
