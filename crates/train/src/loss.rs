//! The losses on the head's logits x, with their gradients for the
//! hand-written backward (`step`).
//!
//! On (U, V) logits, against t = (U, V) / 255, summed over the two channels
//! and averaged over pixels and images: L = 1/(n·W·H) Σ l(x, t), as
//! method.md's −1/(WH) Σ … per image.
//!
//! - BCE, from logits (stable): l = max(x, 0) − x t + log(1 + e^−|x|); ∂l/∂x = σ(x) − t.
//! - L2: l = (σ(x) − t)²; ∂l/∂x = 2 (σ(x) − t) σ(x) (1 − σ(x)).
//!
//! On bin logits, the weighted cross-entropy of `bin_loss`.

use crate::bin_loss::BinObjective;
use crate::config::Loss;
use candle_core::{DType, Device, Result, Tensor};

/// A step's loss on the head's logits: per-channel on (U, V), or over
/// colour bins (`bin_loss`).
#[derive(Clone, Debug)]
pub enum Objective {
    Uv(Loss),
    Bins(BinObjective),
}

/// What the logits are compared with, in the objective's form.
#[derive(Clone, Debug)]
pub enum Targets {
    /// (U, V) / 255, [n, 2, h, w].
    Uv(Tensor),
    /// Soft-encoded bins [n, K, h, w] and each pixel's rebalancing weight [n, 1, h, w].
    Bins { soft: Tensor, weight: Tensor },
}

impl Objective {
    /// The targets of planar (U, V) bytes `uv` [n, 2, h, w].
    pub fn targets(&self, uv: &[u8], (n, h, w): (usize, usize, usize), device: &Device) -> Result<Targets> {
        if uv.len() != n * 2 * h * w {
            candle_core::bail!("targets: {} bytes for [{n}, 2, {h}, {w}]", uv.len());
        }
        match self {
            Objective::Uv(_) => {
                Ok(Targets::Uv((Tensor::from_slice(uv, (n, 2, h, w), device)?.to_dtype(DType::F32)? / 255.0)?))
            }
            Objective::Bins(objective) => {
                let (k, area) = (objective.encoding.bins(), h * w);
                let mut soft = vec![0f32; n * k * area];
                let mut weight = vec![0f32; n * area];
                for image in 0..n {
                    let (u, v) = uv[image * 2 * area..(image + 1) * 2 * area].split_at(area);
                    for (at, (&u, &v)) in u.iter().zip(v).enumerate() {
                        let pairs = objective.encoding.encode(u, v);
                        for &(bin, share) in pairs {
                            soft[(image * k + bin as usize) * area + at] = share;
                        }
                        weight[image * area + at] = objective.weights[pairs[0].0 as usize];
                    }
                }
                Ok(Targets::Bins {
                    soft: Tensor::from_vec(soft, (n, k, h, w), device)?,
                    weight: Tensor::from_vec(weight, (n, 1, h, w), device)?,
                })
            }
        }
    }

    /// The loss (a scalar tensor) built from differentiable candle ops.
    pub fn loss(&self, logits: &Tensor, targets: &Targets) -> Result<Tensor> {
        let (n, _, h, w) = logits.dims4()?;
        let scale = 1.0 / (n * h * w) as f64;
        let per_element = match (self, targets) {
            (Objective::Uv(Loss::Bce), Targets::Uv(t)) => {
                let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
                ((logits.relu()? - (logits * t)?)? + softplus)?
            }
            (Objective::Uv(Loss::L2), Targets::Uv(t)) => (candle_nn::ops::sigmoid(logits)? - t)?.sqr()?,
            (Objective::Bins(_), Targets::Bins { soft, weight }) => {
                let log_p = candle_nn::ops::log_softmax(logits, 1)?;
                (soft * log_p)?.neg()?.broadcast_mul(weight)?
            }
            _ => candle_core::bail!("the targets are not of the objective's form"),
        };
        per_element.sum_all()? * scale
    }

    /// ∂L/∂logits, same shape as the logits.
    pub fn gradient(&self, logits: &Tensor, targets: &Targets) -> Result<Tensor> {
        let (n, _, h, w) = logits.dims4()?;
        let scale = 1.0 / (n * h * w) as f64;
        match (self, targets) {
            (Objective::Uv(kind), Targets::Uv(t)) => {
                let p = candle_nn::ops::sigmoid(logits)?;
                let diff = (&p - t)?;
                match kind {
                    Loss::Bce => diff * scale,
                    Loss::L2 => (diff * (&p * (1.0 - &p)?)?)? * (2.0 * scale),
                    Loss::Bins => candle_core::bail!("the bins loss needs a bins objective"),
                }
            }
            (Objective::Bins(_), Targets::Bins { soft, weight }) => {
                let p = candle_nn::ops::softmax(logits, 1)?;
                (p - soft)?.broadcast_mul(weight)? * scale
            }
            _ => candle_core::bail!("the targets are not of the objective's form"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn bce_is_stable_for_large_logits_and_matches_its_definition() {
        let d = Device::Cpu;
        let x = Tensor::new(&[-80f64, -2.0, 0.0, 3.0, 90.0], &d).unwrap().reshape((1, 1, 1, 5)).unwrap();
        let t = Tensor::new(&[0.25f64, 0.5, 0.5, 0.9, 1.0], &d).unwrap().reshape((1, 1, 1, 5)).unwrap();
        let got = Objective::Uv(Loss::Bce).loss(&x, &Targets::Uv(t)).unwrap().to_scalar::<f64>().unwrap();
        let (xs, ts) = ([-80f64, -2.0, 0.0, 3.0, 90.0], [0.25f64, 0.5, 0.5, 0.9, 1.0]);
        // −[t log p + (1 − t) log(1 − p)] with log p = −log(1 + e^−x), log(1 − p) = −x − log(1 + e^−x).
        let want: f64 = xs
            .iter()
            .zip(ts)
            .map(|(&x, t)| {
                let log_p = -((-x).exp().ln_1p());
                let log_q = if x > 0.0 { -x + log_p } else { -(x.exp().ln_1p()) };
                -(t * log_p + (1.0 - t) * log_q)
            })
            .sum::<f64>()
            / 5.0;
        assert!(got.is_finite() && (got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn gradients_match_autograd() {
        let d = Device::Cpu;
        let x = Var::new(&[[[[-1.5f64, 0.2], [2.0, 0.7]]], [[[0.1, -0.3], [4.0, -4.0]]]], &d).unwrap();
        let t = Tensor::new(&[[[[0.1f64, 0.9], [0.5, 0.5]]], [[[0.0, 1.0], [0.8, 0.2]]]], &d).unwrap();
        let t = Targets::Uv(t);
        for kind in [Loss::Bce, Loss::L2] {
            let objective = Objective::Uv(kind);
            let grads = objective.loss(x.as_tensor(), &t).unwrap().backward().unwrap();
            let auto: Vec<f64> = grads.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let hand: Vec<f64> =
                objective.gradient(x.as_tensor(), &t).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (a, h) in auto.iter().zip(&hand) {
                assert!((a - h).abs() < 1e-12, "{kind:?}: {a} vs {h}");
            }
        }
    }

    /// A bins objective on a few bins of a coarse grid, rebalanced.
    fn bins_objective() -> Objective {
        let bins = colorize_model::colour_bins::ColourBins::in_gamut(32);
        let config = crate::bin_loss::BinLossConfig { rebalance: 0.5, ..Default::default() };
        let encoding = crate::bin_loss::SoftEncoding::new(&bins, &config);
        let frequencies: Vec<f64> = (0..bins.len()).map(|k| (k + 1) as f64).collect();
        let total: f64 = frequencies.iter().sum();
        let frequencies: Vec<f64> = frequencies.iter().map(|f| f / total).collect();
        let weights = crate::bin_loss::rebalancing_weights(&frequencies, config.rebalance);
        Objective::Bins(crate::bin_loss::BinObjective { encoding, weights })
    }

    #[test]
    fn bins_gradient_matches_autograd_and_the_loss_its_definition() {
        let d = Device::Cpu;
        let objective = bins_objective();
        let Objective::Bins(inner) = &objective else { unreachable!() };
        let k = inner.encoding.bins();
        let (n, h, w) = (2, 2, 3);
        let mut rng = colorize_core::Rng::new(7);
        let values: Vec<f32> = (0..n * k * h * w).map(|_| (rng.unit_f64() * 6.0 - 3.0) as f32).collect();
        let x = Var::from_vec(values.clone(), (n, k, h, w), &d).unwrap();
        let uv: Vec<u8> = (0..n * 2 * h * w).map(|_| rng.below(256) as u8).collect();
        let targets = objective.targets(&uv, (n, h, w), &d).unwrap();
        let got = objective.loss(x.as_tensor(), &targets).unwrap().to_scalar::<f32>().unwrap();
        // By hand: for each pixel, −w(nearest) Σ share · log softmax, in f64.
        let mut want = 0.0f64;
        for image in 0..n {
            for at in 0..h * w {
                let z: Vec<f64> = (0..k).map(|q| f64::from(values[(image * k + q) * h * w + at])).collect();
                let max = z.iter().cloned().fold(f64::MIN, f64::max);
                let log_sum = z.iter().map(|z| (z - max).exp()).sum::<f64>().ln() + max;
                let (u, v) = (uv[image * 2 * h * w + at], uv[image * 2 * h * w + h * w + at]);
                let pairs = inner.encoding.encode(u, v);
                let weight = f64::from(inner.weights[pairs[0].0 as usize]);
                want -= weight * pairs.iter().map(|&(q, s)| f64::from(s) * (z[q as usize] - log_sum)).sum::<f64>();
            }
        }
        want /= (n * h * w) as f64;
        assert!((f64::from(got) - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want}");
        let grads = objective.loss(x.as_tensor(), &targets).unwrap().backward().unwrap();
        let auto: Vec<f32> = grads.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let hand: Vec<f32> =
            objective.gradient(x.as_tensor(), &targets).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (a, h) in auto.iter().zip(&hand) {
            assert!((a - h).abs() < 1e-6, "{a} vs {h}");
        }
    }

    #[test]
    fn the_targets_must_match_the_objective() {
        let d = Device::Cpu;
        let logits = Tensor::zeros((1, 2, 1, 1), DType::F32, &d).unwrap();
        let uv = Objective::Uv(Loss::Bce).targets(&[10, 20], (1, 1, 1), &d).unwrap();
        assert!(bins_objective().loss(&logits, &uv).is_err());
        assert!(bins_objective().targets(&[1, 2, 3], (1, 1, 1), &d).is_err(), "wrong byte count");
    }
}
