// softplus(x) = ln(1 + e^x) for the Mamba kernels' step sizes. ln(1 + e^x) is computed with
// Goldberg's log1p trick, so that small e^x keep their relative accuracy instead of vanishing in
// 1 + e^x; for x > 20 it is x to f32 precision, and e^x would overflow further out.
fn softplus(x: f32) -> f32 {
    if (x > 20.0) {
        return x;
    }
    let e = exp(x);
    let w = 1.0 + e;
    if (w == 1.0) {
        return e;
    }
    return log(w) * (e / (w - 1.0));
}
