//! The network of the method, in candle, and colorizing a picture with it.
//!
//! ```text
//! gray Y [n,1,S,S] --normalise--> x [n,3,S,S]
//!   -> Vgg16Trunk (frozen)        taps conv1_2 [n,64,S,S], conv2_2 [n,128,S/2,S/2], conv3_3 [n,256,S/4,S/4]
//!   -> hypercolumn                [n,451,S,S] (bilinear upsampling, no gradient),
//!                                 kept as its parts at their own size (HypercolumnParts)
//!   -> HypercolumnHead (trained)  logits [n,2,S,S]; sigmoid -> (U, V) / 255
//!                                 or logits over colour bins [n,K,S,S]; annealed mean -> (U, V) / 255
//!                                 (its first convolution on the parts: first_conv)
//!   -> smoothing (optional)       Gaussian blur of (U, V)
//! ```
//!
//! **Architecture invariant:** weights enter only through a `VarBuilder`:
//! the trunk from a memory-mapped safetensors file (plain tensors, so it is
//! frozen), the head from a `VarMap` (the only trainable variables).
//! Every convolution goes through `conv::Conv2d`, the one seam where a
//! faster kernel can be put in.
//!
//! The method's modules (`trunk`, `hypercolumn`, `head`, `network`,
//! `colorize`, ...) call the CPU kernels in `kernels`, each of which has a
//! plain-candle reference that every other device runs.

pub mod colorize;
pub mod colour_bins;
mod config;
pub mod conv;
mod device;
mod error;
pub mod guided_filter;
pub mod head;
pub mod hypercolumn;
pub mod kernels;
pub mod network;
pub mod provenance;
pub mod smoothing;
pub mod trunk;
pub mod weights;

pub use colorize::{colorize_image, comparison_strip};
pub use config::{HeadConfig, HeadOutput, ModelConfig, TrunkDtype};
pub use device::parse_device;
pub use error::ModelError;
pub use head::HypercolumnHead;
pub use network::Colorizer;
pub use trunk::{Taps, Vgg16Trunk};
