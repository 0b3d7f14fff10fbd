//! The losses on the head's logits x of the targets t = (U, V) / 255, with
//! their gradients for the hand-written backward (`step`).
//!
//! Both are summed over the two channels and averaged over pixels and
//! images: L = 1/(n·W·H) Σ l(x, t), as method.md's −1/(WH) Σ … per image.
//!
//! - BCE, from logits (stable): l = max(x, 0) − x t + log(1 + e^−|x|); ∂l/∂x = σ(x) − t.
//! - L2: l = (σ(x) − t)²; ∂l/∂x = 2 (σ(x) − t) σ(x) (1 − σ(x)).

use crate::config::Loss;
use candle_core::{Result, Tensor};

/// The loss (a scalar tensor) built from differentiable candle ops.
pub fn loss(kind: Loss, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = logits.dims4()?;
    let scale = 1.0 / (n * h * w) as f64;
    let per_element = match kind {
        Loss::Bce => {
            let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
            ((logits.relu()? - (logits * targets)?)? + softplus)?
        }
        Loss::L2 => (candle_nn::ops::sigmoid(logits)? - targets)?.sqr()?,
    };
    per_element.sum_all()? * scale
}

/// ∂L/∂logits, same shape as the logits.
pub fn loss_gradient(kind: Loss, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = logits.dims4()?;
    let scale = 1.0 / (n * h * w) as f64;
    let p = candle_nn::ops::sigmoid(logits)?;
    let diff = (&p - targets)?;
    match kind {
        Loss::Bce => diff * scale,
        Loss::L2 => (diff * (&p * (1.0 - &p)?)?)? * (2.0 * scale),
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
        let got = loss(Loss::Bce, &x, &t).unwrap().to_scalar::<f64>().unwrap();
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
        for kind in [Loss::Bce, Loss::L2] {
            let grads = loss(kind, x.as_tensor(), &t).unwrap().backward().unwrap();
            let auto: Vec<f64> = grads.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let hand: Vec<f64> =
                loss_gradient(kind, x.as_tensor(), &t).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (a, h) in auto.iter().zip(&hand) {
                assert!((a - h).abs() < 1e-12, "{kind:?}: {a} vs {h}");
            }
        }
    }
}
