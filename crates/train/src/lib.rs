//! Training the hypercolumn head: experiment configs, the SGD loop, checkpoints,
//! run folders and TensorBoard logs.
//!
//! **Architecture invariant:** this is the only crate that writes run folders.

pub mod augment;
pub mod bin_loss;
pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod optimizer;
pub mod path_check;
pub mod qssim_loss;
pub mod run;
pub mod sampling;
pub mod schedule;
pub mod step;
pub mod tensorboard;
mod trainer;
pub mod validate;

pub use config::{ConfigError, Experiment, Loss};
pub use trainer::{config_hash, run_config, train, Event, TrainError, TrainOptions, TrainOutcome};
