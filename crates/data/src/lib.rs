//! From image files to the training cache, and from the cache to batches.
//!
//! Data flows one way through this crate:
//!
//! ```text
//! source::list_images  (sorted relative paths under a root: ILSVRC, SUN397, any folder)
//!   -> sample::draw_order  (seeded permutation: which images, in which order)
//!   -> decode::load_rgb    (any format `image` reads, EXIF orientation, CMYK, 16-bit)
//!   -> prepare::prepare    (short side to S + centre crop, or squash; exact YUV planes)
//!   -> cache::write_cache  (safetensors shards of `y` [n,S,S] and `uv` [n,2,S,S] + manifest.json)
//!   -> cache::UvCache      (memory-mapped random access)
//!   -> batches::BatchLoader (per-epoch shuffles reproducible from (seed, epoch), on its own thread)
//! ```
//!
//! The crate knows nothing of models, optimisers or metrics.

pub mod batches;
pub mod cache;
mod config;
pub mod decode;
mod error;
pub mod prepare;
pub mod sample;
pub mod source;

pub use batches::{Batch, BatchLoader};
pub use cache::{write_cache, CacheSummary, Manifest, UvCache};
pub use config::{CropPolicy, PreprocessConfig};
pub use error::DataError;
pub use source::SourceLayout;
