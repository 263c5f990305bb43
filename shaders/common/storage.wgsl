// The storage dtypes of a kernel's *stored* tensor roles: the tensors a kernel lets be half.
// The first role (flags F16, BF16, NATIVE_F16) is e.g. matmul's w, the latent cache, rmsnorm's
// and rope's rows, state_update's activations; the second role (flags F16_B, BF16_B,
// NATIVE_F16_B; the same accessors with a `_b` suffix) is a tensor whose dtype is chosen
// independently of the first: rmsnorm's weight, matmul's activations, state_update's state.
// Each role is f32 by default; F16 or BF16 stores it as 16-bit halves, and NATIVE_F16 (with
// F16, on a device with SHADER_F16; the composer adds `enable f16;`) binds it as native f16.
// Math is f32 in every case: loads widen, stores round.
//
//   sword            the array element in scalar addressing: f32, or one u32 word / vec2<f16>
//                    holding two halves (element 2i in the low half, as little-endian memory)
//   SPW              elements per sword (1 or 2): element i is lane i % SPW of sword i / SPW
//   sget(w, lane)    lane `lane` of sword `w`, widened to f32
//   squad            4 consecutive elements (vec4<f32>, vec2<u32> or vec4<f16>: 16 or 8 bytes)
//   sget4(q)         a squad widened to vec4<f32>
//   spack4(v)        a vec4<f32> rounded to a squad (for stores of 4 elements a thread owns)
//   sget_bits(w, l)  lane `l` of a sword given as its raw u32 bits (an f32's bits when SPW = 1),
//                    widened: for words copied into a u32 array (state_update's packed dt)
//   half_bits(x)     (F16, BF16) x as a half, the 16-bit pattern in the low bits of a u32:
//                    bf16 rounds to nearest even (NaN stays a quiet NaN); f16 goes through
//                    pack2x16float (WGSL allows either neighbour when x is not exact).
// Without SHADER_F16 halves are never a WGSL type: f16 is decoded by unpack2x16float and bf16
// by shifts (a bf16 is the top 16 bits of an f32), so the same kernel runs on every adapter.
// Scalar stores of halves, where two invocations own the two halves of a word, are the body's
// business (atomicAnd/atomicOr on the word, see latent_cache and state_update).

// Shared by both roles (unused functions cost nothing).
fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
fn bf16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}
fn f16_bits(x: f32) -> u32 {
    return pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu;
}
fn bf16_pack4(v: vec4<f32>) -> vec2<u32> {
    return vec2<u32>(
        bf16_bits(v.x) | (bf16_bits(v.y) << 16u),
        bf16_bits(v.z) | (bf16_bits(v.w) << 16u),
    );
}

// The first role.
#if F16
#if NATIVE_F16
alias sword = vec2<f16>;
alias squad = vec4<f16>;
fn sget(w: sword, lane: u32) -> f32 {
    return f32(w[lane]);
}
fn sget4(q: squad) -> vec4<f32> {
    return vec4<f32>(q);
}
fn spack4(v: vec4<f32>) -> squad {
    return vec4<f16>(v);
}
#else
alias sword = u32;
alias squad = vec2<u32>;
fn sget(w: sword, lane: u32) -> f32 {
    return unpack2x16float(w)[lane];
}
fn sget4(q: squad) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
}
fn spack4(v: vec4<f32>) -> squad {
    return vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}
#endif
const SPW: u32 = 2u;
fn sget_bits(w: u32, lane: u32) -> f32 {
    return unpack2x16float(w)[lane];
}
fn half_bits(x: f32) -> u32 {
    return f16_bits(x);
}
#else
#if BF16
alias sword = u32;
alias squad = vec2<u32>;
const SPW: u32 = 2u;
fn sget(w: sword, lane: u32) -> f32 {
    return bf16_pair(w)[lane];
}
fn sget4(q: squad) -> vec4<f32> {
    return vec4<f32>(bf16_pair(q.x), bf16_pair(q.y));
}
fn spack4(v: vec4<f32>) -> squad {
    return bf16_pack4(v);
}
fn sget_bits(w: u32, lane: u32) -> f32 {
    return bf16_pair(w)[lane];
}
fn half_bits(x: f32) -> u32 {
    return bf16_bits(x);
}
#else
alias sword = f32;
alias squad = vec4<f32>;
const SPW: u32 = 1u;
fn sget(w: sword, lane: u32) -> f32 {
    return w;
}
fn sget4(q: squad) -> vec4<f32> {
    return q;
}
fn spack4(v: vec4<f32>) -> squad {
    return v;
}
fn sget_bits(w: u32, lane: u32) -> f32 {
    return bitcast<f32>(w);
}
#endif
#endif

// The second role: the same accessors, suffixed `_b`.
#if F16_B
#if NATIVE_F16_B
alias sword_b = vec2<f16>;
alias squad_b = vec4<f16>;
fn sget_b(w: sword_b, lane: u32) -> f32 {
    return f32(w[lane]);
}
fn sget4_b(q: squad_b) -> vec4<f32> {
    return vec4<f32>(q);
}
fn spack4_b(v: vec4<f32>) -> squad_b {
    return vec4<f16>(v);
}
#else
alias sword_b = u32;
alias squad_b = vec2<u32>;
fn sget_b(w: sword_b, lane: u32) -> f32 {
    return unpack2x16float(w)[lane];
}
fn sget4_b(q: squad_b) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
}
fn spack4_b(v: vec4<f32>) -> squad_b {
    return vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}
#endif
const SPW_B: u32 = 2u;
fn sget_bits_b(w: u32, lane: u32) -> f32 {
    return unpack2x16float(w)[lane];
}
fn half_bits_b(x: f32) -> u32 {
    return f16_bits(x);
}
#else
#if BF16_B
alias sword_b = u32;
alias squad_b = vec2<u32>;
const SPW_B: u32 = 2u;
fn sget_b(w: sword_b, lane: u32) -> f32 {
    return bf16_pair(w)[lane];
}
fn sget4_b(q: squad_b) -> vec4<f32> {
    return vec4<f32>(bf16_pair(q.x), bf16_pair(q.y));
}
fn spack4_b(v: vec4<f32>) -> squad_b {
    return bf16_pack4(v);
}
fn sget_bits_b(w: u32, lane: u32) -> f32 {
    return bf16_pair(w)[lane];
}
fn half_bits_b(x: f32) -> u32 {
    return bf16_bits(x);
}
#else
alias sword_b = f32;
alias squad_b = vec4<f32>;
const SPW_B: u32 = 1u;
fn sget_b(w: sword_b, lane: u32) -> f32 {
    return w;
}
fn sget4_b(q: squad_b) -> vec4<f32> {
    return q;
}
fn spack4_b(v: vec4<f32>) -> squad_b {
    return v;
}
fn sget_bits_b(w: u32, lane: u32) -> f32 {
    return bitcast<f32>(w);
}
#endif
#endif
