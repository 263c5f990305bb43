//! Wall clocks that work on every target: `std::time` natively; in a browser, where
//! `std::time::Instant::now` panics, the page's `performance.now()` and `Date.now()` through
//! `web_time`, which has the same API.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use std::time::{Instant, SystemTime, UNIX_EPOCH};
#[cfg(target_arch = "wasm32")]
pub(crate) use web_time::{Instant, SystemTime, UNIX_EPOCH};
