//! Measuring colour quality: QSSIM (the paper's measure) and the others, and
//! scoring a folder of predictions or a model on a dataset.
//!
//! `measures` is pure: RGB images in, numbers out. `score` pairs images,
//! makes predictions (a model, or a baseline), runs the measures in
//! parallel and aggregates them into a `Report`. `oracle` copies predictions
//! with the truth's hue or chroma magnitude put in, to measure what limits
//! a colorizer.
//!
//! **Architecture invariant:** eval does not depend on train: any colorizer's
//! outputs can be scored, and training uses the same measures.

pub mod html;
pub mod measures;
pub mod oracle;
pub mod report;
pub mod score;

pub use measures::{MeasureError, Metric};
pub use report::{Failure, Report, Summary};
pub use score::{score, Item, Predictor, Protocol, Scoring};
