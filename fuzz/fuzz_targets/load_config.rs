//! Any text given to the Hugging Face config loader yields a validated config or an error, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = ssm_mla::mla::MlaConfig::from_json_str(text, "fuzz") {
            let _ = cfg.softmax_scale();
            let _ = cfg.inv_freq();
            let _ = cfg.cache_values_per_token();
        }
    }
});
