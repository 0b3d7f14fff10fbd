//! Training the hypercolumn head: experiment configs, the SGD loop, checkpoints,
//! run folders and TensorBoard logs.
//!
//! **Architecture invariant:** this is the only crate that writes run folders.

pub mod config;

pub use config::{ConfigError, Experiment};
