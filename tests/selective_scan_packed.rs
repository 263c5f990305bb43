//! The packed (token-major, ragged) form of the selective scan against the f64 reference run
//! sequence by sequence: sequences of different lengths (1, short, longer than a workgroup of
//! rows' worth), u/z/B/C read as column windows of wider "projection" tensors (views with row
//! strides), the state pool read at each sequence's slot and updated there (other rows untouched),
//! N over one 16-state pass, grouped B/C, NaN-poisoned output. Tolerance: atol 1e-5, rtol 1e-4
//! as tests/selective_scan.rs (f32 recurrences of ≤ 40 steps, each ~1 ulp).

mod common;

use ssm_mla::ops::selective_scan::{PackedScanInputs, SelectiveScan};
use ssm_mla::reference::selective_scan::{selective_scan, SelectiveScanHost};
use ssm_mla::spec::selective_scan::BcLayout;
use ssm_mla::testing::selective_scan::{dims, random_a, random_dt};
use ssm_mla::{Tolerance, View};

const TOL: Tolerance = Tolerance::new(1e-5, 1e-4);

/// Column `c0 .. c0 + w` of row t of a (T, width) row-major matrix.
fn cols(m: &[f32], width: usize, t: usize, c0: usize, w: usize) -> &[f32] {
    &m[t * width + c0..t * width + c0 + w]
}

#[test]
fn packed_ragged_views_and_pool_match_the_reference() {
    let (mut rng, seed) = common::rng("selective_scan packed");
    for (name, gpu) in common::gpus() {
        for &(dim, n, groups, ref lens) in &[
            (6usize, 16usize, 1usize, vec![5usize, 1, 12]),
            (8, 20, 2, vec![3, 40]),
            (1, 4, 1, vec![1]),
        ] {
            let s = lens.len();
            let t: usize = lens.iter().sum();
            let pool = s + 2;
            let slots: Vec<u32> = (0..s).map(|i| ((i * 2 + 1) % pool) as u32).collect();
            // in_proj-like (T, 2D + 3): u = columns 0..D, z = columns D..2D.
            let pw = 2 * dim + 3;
            let proj = rng.normal_vec(t * pw, 0.0, 1.0);
            // x_proj-like (T, 2 + 2·G·N): B then C after 2 leading columns.
            let gn = groups * n;
            let xw = 2 + 2 * gn;
            let xdbl = rng.normal_vec(t * xw, 0.0, 1.0);
            let (delta, bias) = random_dt(&mut rng, t * dim, dim, true, true);
            let bias = bias.unwrap();
            let a = random_a(&mut rng, dim * n);
            let dskip = rng.normal_vec(dim, 0.0, 1.0);
            let pool_init = rng.normal_vec(pool * dim * n, 0.0, 0.5);

            let proj_g = gpu.upload_f32(&[t, pw], &proj).unwrap();
            let xdbl_g = gpu.upload_f32(&[t, xw], &xdbl).unwrap();
            let u_v = proj_g.view().narrow(1, 0, dim).unwrap();
            let z_v = proj_g.view().narrow(1, dim, dim).unwrap();
            let x3 = xdbl_g.reshaped(&[t, 1, xw]).unwrap();
            let _ = x3;
            let b_v = View::as_strided(&xdbl_g, 2, &[t, groups, n], &[xw, n, 1]).unwrap();
            let c_v = View::as_strided(&xdbl_g, 2 + gn, &[t, groups, n], &[xw, n, 1]).unwrap();
            let delta_g = gpu.upload_f32(&[t, dim], &delta).unwrap();
            let a_g = gpu.upload_f32(&[dim, n], &a).unwrap();
            let d_g = gpu.upload_f32(&[dim], &dskip).unwrap();
            let bias_g = gpu.upload_f32(&[dim], &bias).unwrap();
            let pool_g = gpu.upload_f32(&[pool, dim, n], &pool_init).unwrap();
            let out_g = gpu.nan_f32(&[t, dim]).unwrap();
            let mut cu = vec![0u32];
            for l in lens {
                cu.push(cu.last().unwrap() + *l as u32);
            }
            let op = SelectiveScan::new(&gpu).unwrap();
            let mut batch = gpu.batch();
            op.record_packed(
                &mut batch,
                &PackedScanInputs {
                    u: &u_v,
                    delta: &delta_g.view(),
                    a: &a_g,
                    b: &b_v,
                    c: &c_v,
                    d: Some(&d_g),
                    z: Some(&z_v),
                    delta_bias: Some(&bias_g),
                    delta_softplus: true,
                    cu_seqlens: &cu,
                    slots: &slots,
                },
                &out_g.view(),
                &pool_g,
            )
            .unwrap();
            batch.run().unwrap();
            let out = gpu.read_f32(&out_g).unwrap();
            let pool_after = gpu.read_f32(&pool_g).unwrap();

            // Reference, one sequence at a time in the channel-first layout.
            let mut want_out = vec![0.0f64; t * dim];
            let mut want_pool: Vec<f64> = pool_init.iter().map(|&x| x as f64).collect();
            for (si, &l) in lens.iter().enumerate() {
                let t0 = cu[si] as usize;
                let cf = |f: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
                    (0..dim)
                        .flat_map(|d| (0..l).map(move |k| (d, k)))
                        .map(|(d, k)| f(d, t0 + k))
                        .collect()
                };
                let u_cf = cf(&|d, tt| cols(&proj, pw, tt, 0, dim)[d]);
                let z_cf = cf(&|d, tt| cols(&proj, pw, tt, dim, dim)[d]);
                let dl_cf = cf(&|d, tt| delta[tt * dim + d]);
                // B, C (1, G, N, L).
                let bc_cf = |c0: usize| -> Vec<f32> {
                    let mut v = Vec::with_capacity(gn * l);
                    for g in 0..groups {
                        for j in 0..n {
                            for k in 0..l {
                                v.push(cols(&xdbl, xw, t0 + k, c0 + g * n + j, 1)[0]);
                            }
                        }
                    }
                    v
                };
                let b_cf = bc_cf(2);
                let c_cf = bc_cf(2 + gn);
                let slot = slots[si] as usize;
                let init = &pool_init[slot * dim * n..(slot + 1) * dim * n];
                let r = selective_scan(&SelectiveScanHost {
                    dims: dims(
                        1,
                        dim,
                        l,
                        n,
                        BcLayout::Grouped(groups),
                        BcLayout::Grouped(groups),
                    ),
                    u: &u_cf,
                    delta: &dl_cf,
                    a: &a,
                    b: &b_cf,
                    c: &c_cf,
                    d: Some(&dskip),
                    z: Some(&z_cf),
                    delta_bias: Some(&bias),
                    initial_state: Some(init),
                    delta_softplus: true,
                })
                .unwrap();
                for d in 0..dim {
                    for k in 0..l {
                        want_out[(t0 + k) * dim + d] = r.out[d * l + k];
                    }
                }
                want_pool[slot * dim * n..(slot + 1) * dim * n].copy_from_slice(&r.last_state);
            }
            let what = format!("{name} D={dim} N={n} G={groups} lens={lens:?}");
            common::assert_close(&format!("{what} out"), &out, &want_out, TOL, seed);
            common::assert_close(&format!("{what} pool"), &pool_after, &want_pool, TOL, seed);
        }
    }
}

#[test]
fn packed_misuse_is_refused() {
    let gpu = common::gpu();
    let op = SelectiveScan::new(&gpu).unwrap();
    let (t, dim, n) = (4, 3, 4);
    let x = gpu.upload_f32(&[t, dim], &[0.5; 12]).unwrap();
    let a = gpu.upload_f32(&[dim, n], &[-1.0; 12]).unwrap();
    let bc = gpu.upload_f32(&[t, 1, n], &[0.1; 16]).unwrap();
    let pool = gpu.upload_f32(&[2, dim, n], &[0.0; 24]).unwrap();
    let out = gpu.nan_f32(&[t, dim]).unwrap();
    let base = PackedScanInputs {
        u: &x.view(),
        delta: &x.view(),
        a: &a,
        b: &bc.view(),
        c: &bc.view(),
        d: None,
        z: None,
        delta_bias: None,
        delta_softplus: false,
        cu_seqlens: &[0, 1, 4],
        slots: &[0, 1],
    };
    let try_with = |inp: PackedScanInputs, out: &View| {
        let mut batch = gpu.batch();
        op.record_packed(&mut batch, &inp, out, &pool)
            .err()
            .map(|e| e.to_string())
    };
    assert!(try_with(base, &out.view()).is_none());
    let e = try_with(
        PackedScanInputs {
            cu_seqlens: &[0, 3, 2],
            ..base
        },
        &out.view(),
    )
    .unwrap();
    assert!(e.contains("cu_seqlens"), "{e}");
    let e = try_with(
        PackedScanInputs {
            slots: &[1, 1],
            ..base
        },
        &out.view(),
    )
    .unwrap();
    assert!(e.contains("slots"), "{e}");
    let e = try_with(
        PackedScanInputs {
            slots: &[0, 2],
            ..base
        },
        &out.view(),
    )
    .unwrap();
    assert!(e.contains("slots"), "{e}");
    let overlapping = View::as_strided(&out, 0, &[t, dim], &[1, 1]).unwrap();
    let e = try_with(base, &overlapping).unwrap();
    assert!(e.contains("twice"), "{e}");
    let e = try_with(base, &x.view()).unwrap();
    assert!(e.contains("shares its buffer"), "{e}");
    let wide = gpu.upload_f32(&[t, 1, n + 1], &[0.1; 20]).unwrap();
    let e = try_with(
        PackedScanInputs {
            b: &wide.view(),
            ..base
        },
        &out.view(),
    )
    .unwrap();
    assert!(e.contains("`B`"), "{e}");
}
