//! One batch through everything a device runs (the trunk's taps, the
//! hypercolumn, the head's logits, the prediction, one dense and one
//! sampled step's gradients), and the comparison of two such runs: a GPU's
//! against the CPU's (`cargo xtask gpu-check`), or the reference path's
//! against the fast CPU path's (the tests).

use crate::loss::Objective;
use crate::sampling::targets_at;
use crate::step::{head_gradients, sampled_gradients, StepGradients, Supervision};
use crate::Loss;
use candle_core::{Result, Tensor};

type ModelResult<T> = std::result::Result<T, ModelError>;
use colorize_core::Rng;
use colorize_model::hypercolumn::Pixel;
use colorize_model::{Colorizer, ModelError};

/// What a run computed, every tensor copied to the CPU.
pub struct PathOutputs {
    pub tensors: Vec<(&'static str, Tensor)>,
    pub dense: StepGradients,
    pub sampled: StepGradients,
}

/// A reproducible batch of `n` gray pictures of side `s` with textured
/// luminance and varied chroma: (Y bytes, UV bytes).
pub fn test_batch(n: usize, s: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let y = (0..n * s * s).map(|i| ((i % s) * 5 + (i / s % s) * 3 + rng.below(40) as usize) as u8).collect();
    let uv = (0..n * 2 * s * s).map(|_| 60 + rng.below(140) as u8).collect();
    (y, uv)
}

/// The batch (`n` pictures of side `s`) through `model` on its device.
pub fn run_paths(model: &Colorizer, y8: &[u8], uv: &[u8], n: usize, s: usize) -> ModelResult<PathOutputs> {
    let device = model.device().clone();
    let cpu = |t: Tensor| t.to_device(&candle_core::Device::Cpu);
    let y = model.gray_tensor(y8, n, s, s)?;
    let x = colorize_model::trunk::normalise_gray(&y)?;
    let taps = model.trunk().forward(&x)?;
    let parts = model.hypercolumn_parts(&y)?;
    let dense_hypercolumn = parts.dense()?;
    let objective = Objective::Uv(Loss::Bce);
    let targets = objective.targets(uv, (n, s, s), &device)?;
    let supervision = Supervision::Dense { hypercolumn: &parts, targets: &targets, qssim: None };
    let dense = on_cpu(head_gradients(model.head(), supervision, &objective)?)?;
    let pixels: Vec<Pixel> = (0..12).map(|k| Pixel { image: k % n, row: (k * 7) % s, col: (k * 11) % s }).collect();
    let sampled = on_cpu(sampled_gradients(model, &y, &pixels, &targets_at(uv, s, &pixels), &objective)?)?;
    let tensors = vec![
        ("conv1_2", cpu(taps.conv1_2)?),
        ("conv2_2", cpu(taps.conv2_2)?),
        ("conv3_3", cpu(taps.conv3_3)?),
        ("hypercolumn", cpu(dense_hypercolumn.clone())?),
        ("logits", cpu(model.logits(&parts)?)?),
        ("prediction", cpu(model.predict(&y)?)?),
    ];
    Ok(PathOutputs { tensors, dense, sampled })
}

fn on_cpu(step: StepGradients) -> Result<StepGradients> {
    let grads = step
        .grads
        .into_iter()
        .map(|(name, g)| Ok((name, g.to_device(&candle_core::Device::Cpu)?)))
        .collect::<Result<_>>()?;
    Ok(StepGradients { loss: step.loss, grads })
}

/// ‖a − b‖ / ‖a‖ over every element (Euclidean).
pub fn relative_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
    let norm = |t: &Tensor| -> Result<f32> {
        Ok(t.to_dtype(candle_core::DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt())
    };
    Ok(norm(&(a - b)?)? / norm(a)?.max(1e-30))
}

/// Every tensor, gradient and loss of `b` against `a`: (what, relative
/// difference), in a fixed order.
pub fn compare(a: &PathOutputs, b: &PathOutputs) -> Result<Vec<(String, f32)>> {
    let mut all = Vec::new();
    for ((name, x), (_, y)) in a.tensors.iter().zip(&b.tensors) {
        all.push((name.to_string(), relative_difference(x, y)?));
    }
    for (kind, ga, gb) in [("dense", &a.dense, &b.dense), ("sampled", &a.sampled, &b.sampled)] {
        let mut names: Vec<&String> = ga.grads.keys().collect();
        names.sort();
        for name in names {
            let Some(other) = gb.grads.get(name) else {
                candle_core::bail!("the {kind} step has no gradient of {name} on one side");
            };
            all.push((format!("{kind} gradient of {name}"), relative_difference(&ga.grads[name], other)?));
        }
        all.push((format!("{kind} loss"), ((ga.loss - gb.loss) / ga.loss.abs().max(1e-12)).abs() as f32));
    }
    Ok(all)
}

/// One step's gradients as one vector (every variable's, by name).
pub fn joined_gradients(step: &StepGradients) -> Result<Tensor> {
    let mut names: Vec<&String> = step.grads.keys().collect();
    names.sort();
    let parts = names.iter().map(|n| step.grads[*n].flatten_all()).collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}
