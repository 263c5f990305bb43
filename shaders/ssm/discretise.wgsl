// The diagonal SSM's inputs and their discretisation, shared by the two strategies of the
// diagonal scan (diagonal_scan.wgsl, diagonal_scan_rows.wgsl) so that the op binds either the
// same way and both discretise identically.
//
//   z = Δ_h·λ_{h,n};  (Λ̄, g) = ZOH: (exp z, Δ·(exp z − 1)/z) | bilinear: ((1+z/2)/(1−z/2), Δ/(1−z/2))
//                             | forward Euler: (1+z, Δ) | backward Euler: (1/(1−z), Δ/(1−z))
//   B̄ = g·B̃_{h,n}
// Complex numbers are vec2<f32> (re, im).
//
// Dtypes (common/storage.wgsl): u and y share one dtype, f32 or (flag F16 or BF16) halves two
// per u32 word (element i in word i / 2, the low half for even i; NATIVE_F16 binds u as
// vec2<f16>); the SSM parameters are f32. Loads widen, the math is f32, y is rounded on store.
// A word of half y may hold elements of two invocations (rows of odd L, runs of T steps), so
// each element is stored with atomicAnd (clear its half) then atomicOr (set it) on its word:
// disjoint bits commute, no word ownership is needed (the row kernel writes the words wholly
// inside its row with one atomicStore instead: store_y_step). Index arithmetic stays in the bodies
// (row·L + t); loads and stores of u and y go through load_u / load_y / store_y.

struct Params {
    rows: u32,      // Bt·H
    channels: u32,  // H
    len: u32,       // L
    modes: u32,     // N
    method: u32,    // 0 ZOH, 1 bilinear, 2 forward Euler, 3 backward Euler
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
// Flag VEC4 (the row kernel on CPU devices, f32, L % 4 = 0): u and y as 16-byte elements, 4
// steps of a row per access.
@group(0) @binding(1) var<storage, read> u: array<vec4<f32>>;        // (Bt, H, L)
#else
@group(0) @binding(1) var<storage, read> u: array<sword>;             // (Bt, H, L)
#endif
@group(0) @binding(2) var<storage, read> lambda: array<vec2<f32>>;    // (H, N) complex
@group(0) @binding(3) var<storage, read> b_tilde: array<vec2<f32>>;   // (H, N) complex
@group(0) @binding(4) var<storage, read> c_tilde: array<vec2<f32>>;   // (H, N) complex
@group(0) @binding(5) var<storage, read> dt: array<f32>;              // (H) raw positive Δ, not its log
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;          // (H)
#if F16 || BF16
@group(0) @binding(7) var<storage, read_write> y: array<atomic<u32>>; // (Bt, H, L) halves, in pairs
#else
#if VEC4
@group(0) @binding(7) var<storage, read_write> y: array<vec4<f32>>;  // (Bt, H, L)
#else
@group(0) @binding(7) var<storage, read_write> y: array<f32>;         // (Bt, H, L)
#endif
#endif

#include "common/storage"
#include "common/trig"

#if VEC4
// u[i .. i + 4], y[i .. i + 4] (i % 4 = 0): one access each.
fn load_u4(i: u32) -> vec4<f32> {
    return u[i / 4u];
}
fn load_y4(i: u32) -> vec4<f32> {
    return y[i / 4u];
}
fn store_y4(i: u32, v: vec4<f32>) {
    y[i / 4u] = v;
}
#else
// u[i], widened to f32.
fn load_u(i: u32) -> f32 {
    return sget(u[i / SPW], i % SPW);
}

// y[i] = v, rounded to u's dtype.
fn store_y(i: u32, v: f32) {
#if F16 || BF16
    let shift = (i & 1u) * 16u;
    atomicAnd(&y[i / 2u], ~(0xffffu << shift));
    atomicOr(&y[i / 2u], half_bits(v) << shift);
#else
    y[i] = v;
#endif
}

// The row kernel's store of y[i] = v at step t of a row of `len` steps, walked in time order
// (one pass of modes, which the host guarantees for half y). f32: a plain store. Halves: a word
// both of whose elements are this row's is written whole by atomicStore when its odd element
// comes (the even one waits in `pending`); the word is this invocation's alone, so one store
// replaces two read-modify-writes. Only a row's end elements (odd L) use store_y's atomics.
fn store_y_step(i: u32, t: u32, len: u32, v: f32, pending: ptr<function, f32>) {
#if F16 || BF16
    let odd = (i & 1u) == 1u;
    if (!odd && t + 1u < len) {
        *pending = v;
    } else if (odd && t > 0u) {
        atomicStore(&y[i / 2u], half_bits(*pending) | (half_bits(v) << 16u));
    } else {
        store_y(i, v);
    }
#else
    store_y(i, v);
#endif
}

// y[i] as stored (the row kernel's partial sums over earlier passes of modes; the host never
// runs that kernel with more than one pass on half y, which would round each partial).
fn load_y(i: u32) -> f32 {
#if F16 || BF16
    return sget_bits(atomicLoad(&y[i / 2u]), i % 2u);
#else
    return y[i];
#endif
}
#endif

fn cmul(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x.x * y.x - x.y * y.y, x.x * y.y + x.y * y.x);
}

fn cdiv(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x.x * y.x + x.y * y.y, x.y * y.x - x.x * y.y) / dot(y, y);
}

fn expm1_real(x: f32) -> f32 {
    if (abs(x) < 0.1) {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x / 720.0)))));
    }
    return exp(x) - 1.0;
}

// (exp(z) − 1)/z without cancellation for small |z|.
fn expm1_over_z(z: vec2<f32>) -> vec2<f32> {
    if (dot(z, z) < 1e-4) {
        let z2 = cmul(z, z);
        return vec2<f32>(1.0, 0.0) + 0.5 * z + z2 / 6.0 + cmul(z2, z) / 24.0 + cmul(z2, z2) / 120.0;
    }
    let half_sin = cos_sin(0.5 * z.y).y;
    let cs = cos_sin(z.y);
    let num = vec2<f32>(expm1_real(z.x) * cs.x - 2.0 * half_sin * half_sin, exp(z.x) * cs.y);
    return cdiv(num, z);
}

// (Λ̄, B̄) of mode m of channel h.
fn discretise_mode(h: u32, m: u32) -> vec4<f32> {
    let i = h * params.modes + m;
    let step = dt[h];
    let z = step * lambda[i];
    let one = vec2<f32>(1.0, 0.0);
    var abar: vec2<f32>;
    var g: vec2<f32>;
    switch params.method {
        case 1u: {
            let inv = cdiv(one, one - 0.5 * z);
            abar = cmul(one + 0.5 * z, inv);
            g = step * inv;
        }
        case 2u: {
            abar = one + z;
            g = vec2<f32>(step, 0.0);
        }
        case 3u: {
            abar = cdiv(one, one - z);
            g = step * abar;
        }
        default: {
            abar = exp(z.x) * cos_sin(z.y);
            g = step * expm1_over_z(z);
        }
    }
    return vec4<f32>(abar, cmul(g, b_tilde[i]));
}
