//! CPU reference of `latent_cache` (append): the cache after writing each latent row to its slot.

/// `cache` holds num_slots rows of width `w` (num_slots = cache.len() / w); returns it with
/// row `slots[t]` replaced by `latent[t*w..(t+1)*w]` for every t whose slot is < num_slots.
pub fn append(cache: &[f32], w: usize, latent: &[f32], slots: &[u32]) -> Vec<f64> {
    let mut out: Vec<f64> = cache.iter().map(|&x| x as f64).collect();
    let num_slots = cache.len() / w;
    for (t, &slot) in slots.iter().enumerate() {
        let slot = slot as usize;
        if slot < num_slots {
            for d in 0..w {
                out[slot * w + d] = latent[t * w + d] as f64;
            }
        }
    }
    out
}
