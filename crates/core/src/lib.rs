//! Shared vocabulary of the colorization pipeline.
//!
//! Everything here is pure and dependency-free: the exact YUV colour space of
//! the method (`yuv`), image sides checked once where they enter (`Side`), a
//! seeded RNG whose stream is identical on every machine (`rng`), and a small
//! content fingerprint (`fingerprint`). The other crates trust these types
//! instead of re-checking their values.

mod fingerprint;
pub mod rng;
mod side;
pub mod yuv;

pub use fingerprint::fingerprint;
pub use rng::Rng;
pub use side::{Side, SideError};
