//! One training step of the head, forward and a hand-written backward.
//!
//! Why not `loss.backward()`: candle's conv2d backward always computes the
//! gradient of the convolution's input, and the first head convolution's
//! input is the hypercolumn, a constant (the trunk is frozen). That input
//! gradient (451 channels at full size, through a naive transposed
//! convolution) is most of the cost of autograd's backward. Here every
//! gradient is computed that the update needs, and nothing else.
//!
//! ```text
//! a' = conv1(T)   a = relu(a')      b' = conv2(a)   b = relu(b')
//! q = [a, b]      z = out(q)        (1x1)           L = loss(z, t)
//! ```
//!
//! With scene context, a' gains `Ws · s` at every pixel of a picture whose
//! scene vector is s, so ∂L/∂Ws = Σ over pictures (Σ over its pixels ∂L/∂a') ⊗ s.

use crate::loss::{Objective, Targets};
use crate::qssim_loss::{qssim_gradient, QssimTerm};
use candle_core::{DType, Result, Tensor};
use colorize_model::conv::Conv2d;
use colorize_model::head::add_scene_context;
use colorize_model::hypercolumn::{HypercolumnParts, Pixel};
use colorize_model::kernels::first_conv::{first_conv, first_conv_weight_gradient};
use colorize_model::kernels::relu_backward::relu_backward;
use colorize_model::kernels::weight_gradient::weight_gradient;
use colorize_model::{Colorizer, HypercolumnHead, ModelError};
use std::collections::HashMap;

/// The loss and the gradient of every head variable, by name.
pub struct StepGradients {
    pub loss: f64,
    pub grads: HashMap<String, Tensor>,
}

impl StepGradients {
    /// What is not finite, if anything: the loss, or the first gradient by
    /// name. An update with it would make the weights non-finite.
    pub fn non_finite(&self) -> Result<Option<String>> {
        if !self.loss.is_finite() {
            return Ok(Some(format!("loss {}", self.loss)));
        }
        let mut names: Vec<&String> = self.grads.keys().collect();
        names.sort();
        // One number for all of them, summed on the device: a step copies
        // back only its loss and this (on a GPU every copy is a sync).
        let sums =
            names.iter().map(|n| self.grads[*n].abs()?.sum_all()?.to_dtype(DType::F64)).collect::<Result<Vec<_>>>()?;
        if let Some(first) = sums.first() {
            let total = sums[1..].iter().try_fold(first.clone(), |acc, s| acc + s)?;
            if total.to_scalar::<f64>()?.is_finite() {
                return Ok(None);
            }
        }
        for (name, sum) in names.iter().zip(&sums) {
            if !sum.to_scalar::<f64>()?.is_finite() {
                return Ok(Some(format!("the gradient of {name} is not finite")));
            }
        }
        Ok(None)
    }
}

/// What a step is trained on.
#[derive(Clone, Copy, Debug)]
pub enum Supervision<'a> {
    /// Every pixel: the hypercolumn (as its parts, see `first_conv`) of
    /// [n, h, w] images against targets of [n, h, w] pixels, with an
    /// optional QSSIM term on the whole pictures (`qssim_loss`).
    Dense { hypercolumn: &'a HypercolumnParts, targets: &'a Targets, qssim: Option<QssimTerm<'a>> },
    /// Sampled pixels: windows [N, 451, r, r] around them (see
    /// `hypercolumn_patches`; r is the head's receptive field), the targets
    /// of [N, 1, 1] pixels at their centres, `inside` [N, 1, r, r] marks the window
    /// positions in the image. Zeroing conv1's output outside the image makes
    /// the window's centre equal the dense head's output there, so the
    /// gradients from the centres alone are exactly the dense ones with the
    /// loss at those pixels.
    /// `scene` [N, 256]: each window's picture's scene vector.
    Centres { windows: &'a Tensor, targets: &'a Targets, inside: &'a Tensor, scene: &'a Tensor },
}

/// Forward and backward of the head under `objective`.
pub fn head_gradients(
    head: &HypercolumnHead,
    supervision: Supervision<'_>,
    objective: &Objective,
) -> Result<StepGradients> {
    // The head's weights are trainable `Var`s; detached copies keep this
    // step's tensors (and the gradients returned) free of autograd graphs.
    let detached = |c: &Conv2d| Conv2d::new(c.weight().detach(), c.bias().detach());
    let [conv1, conv2, out] = head.convs();
    let (conv1, conv2, out) = (detached(conv1)?, detached(conv2)?, detached(out)?);
    let scene_weight = head.scene_weight().map(|w| w.detach());
    let head = Head { conv1: &conv1, conv2: &conv2, out: &out, scene: scene_weight.as_ref() };
    match supervision {
        Supervision::Dense { hypercolumn, targets, qssim } => {
            dense_gradients(head, hypercolumn, targets, qssim, objective)
        }
        Supervision::Centres { windows, targets, inside, scene } => {
            centre_gradients(head, windows, inside, scene, targets, objective)
        }
    }
}

/// The head's weights, detached.
#[derive(Clone, Copy)]
struct Head<'a> {
    conv1: &'a Conv2d,
    conv2: &'a Conv2d,
    out: &'a Conv2d,
    /// `scene.weight` [c1, 256], for a head with scene context.
    scene: Option<&'a Tensor>,
}

fn dense_gradients(
    Head { conv1, conv2, out, scene: scene_weight }: Head<'_>,
    t: &HypercolumnParts,
    targets: &Targets,
    qssim: Option<QssimTerm<'_>>,
    objective: &Objective,
) -> Result<StepGradients> {
    let c1 = conv1.weight().dim(0)?;
    let c2 = conv2.weight().dim(0)?;
    let k = out.weight().dim(0)?;
    let (n, h, w) = t.size()?;

    let a_pre = add_scene_context(first_conv(conv1, t)?, scene_weight, &t.scene)?;
    let a = a_pre.relu()?;
    let b_pre = candle_core::Module::forward(conv2, &a)?;
    let b = b_pre.relu()?;
    let q = Tensor::cat(&[&a, &b], 1)?;
    let z = candle_core::Module::forward(out, &q)?;
    let mut loss_value = objective.loss(&z, targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let mut dz = objective.gradient(&z, targets)?;
    if let Some(term) = qssim {
        let Targets::Uv(uv) = targets else { candle_core::bail!("the QSSIM term needs (U, V) targets") };
        let (score, dz_qssim) = qssim_gradient(term, &z, uv)?;
        loss_value += term.weight * (1.0 - score);
        dz = (dz + dz_qssim)?;
    }
    let mut grads = HashMap::new();

    // out: 1x1 convolution, a matrix product per pixel.
    let dz_flat = dz.reshape((n, k, h * w))?;
    let q_flat = q.reshape((n, c1 + c2, h * w))?;
    let d_out_w = dz_flat.matmul(&q_flat.transpose(1, 2)?)?.sum(0)?.reshape((k, c1 + c2, 1, 1))?;
    grads.insert("out.weight".to_string(), d_out_w);
    grads.insert("out.bias".to_string(), sum_nhw(&dz)?);
    // dq = Woutᵀ · dz, as its a and b parts (each contiguous).
    let w_out_t = out.weight().reshape((k, c1 + c2))?.t()?;
    let dq_a = w_out_t.narrow(0, 0, c1)?.broadcast_matmul(&dz_flat)?.reshape((n, c1, h, w))?;
    let dq_b = w_out_t.narrow(0, c1, c2)?.broadcast_matmul(&dz_flat)?.reshape((n, c2, h, w))?;

    // conv2, through its ReLU.
    let db_pre = relu_backward(dq_b, None, &b_pre)?;
    grads.insert("conv2.weight".to_string(), weight_gradient(&a, &db_pre, conv2.weight().dim(3)?)?);
    grads.insert("conv2.bias".to_string(), sum_nhw(&db_pre)?);

    // conv1, through its ReLU (a feeds both q and conv2): the weight
    // gradient only (T is constant).
    let da_pre = relu_backward(input_gradient(&db_pre, conv2)?, Some(&dq_a), &a_pre)?;
    grads.insert("conv1.weight".to_string(), first_conv_weight_gradient(t, &da_pre, conv1.weight().dim(3)?)?);
    let per_picture = da_pre.reshape((n, c1, h * w))?.sum(2)?; // [n, c1]
    if scene_weight.is_some() {
        grads.insert("scene.weight".to_string(), per_picture.t()?.matmul(&t.scene)?);
    }
    grads.insert("conv1.bias".to_string(), per_picture.sum(0)?);
    Ok(StepGradients { loss: loss_value, grads })
}

/// The head at the centres of r x r windows only (r = k1 + k2 - 1), as
/// plain matrix products: the centre's output reads conv2 at the centre,
/// which reads conv1 at the k2 x k2 positions around it, which read the
/// whole window. So conv1 runs at k2² positions per window (9, where a
/// 'same' convolution over the window would run 25), conv2 and the output
/// at one.
///
/// ```text
/// cols [N·k2², 451·k1²]  (the k1 x k1 patch under each conv1 position)
/// a = relu(cols · W1ᵀ + b1) · inside          [N·k2², c1]
/// b = relu([a around the centre] · W2ᵀ + b2)  [N, c2]
/// z = [a at the centre, b] · Woutᵀ + bout     [N, outputs]
/// ```
fn centre_gradients(
    Head { conv1, conv2, out, scene: scene_weight }: Head<'_>,
    windows: &Tensor,
    inside: &Tensor,
    scene: &Tensor,
    targets: &Targets,
    objective: &Objective,
) -> Result<StepGradients> {
    let (count, cin, r, r2) = windows.dims4()?;
    let k = out.weight().dim(0)?;
    let (c1, _, k1, _) = conv1.weight().dims4()?;
    let (c2, _, k2, _) = conv2.weight().dims4()?;
    if r != r2 || r != k1 + k2 - 1 {
        candle_core::bail!("windows [{count}, _, {r}, {r2}] do not match the head's receptive field {}", k1 + k2 - 1);
    }
    let positions = k2 * k2;
    let centre = positions / 2;
    let mut cols = Vec::with_capacity(positions);
    let mut mask = Vec::with_capacity(positions);
    for py in 0..k2 {
        for px in 0..k2 {
            cols.push(windows.narrow(2, py, k1)?.narrow(3, px, k1)?.reshape((count, cin * k1 * k1))?);
            mask.push(inside.narrow(2, py + k1 / 2, 1)?.narrow(3, px + k1 / 2, 1)?.reshape((count, 1))?);
        }
    }
    // Rows ordered (window, position).
    let cols = Tensor::stack(&cols, 1)?.reshape((count * positions, cin * k1 * k1))?;
    let mask = Tensor::stack(&mask, 1)?.reshape((count * positions, 1))?;
    let w1 = conv1.weight().reshape((c1, cin * k1 * k1))?;
    let w2 = conv2.weight().reshape((c2, c1 * positions))?;
    let w_out = out.weight().reshape((k, c1 + c2))?;

    let mut a_pre = cols.matmul(&w1.t()?)?.broadcast_add(conv1.bias())?;
    if let Some(ws) = scene_weight {
        // Each window's scene term, the same at its k2² positions.
        let by_window = scene.matmul(&ws.t()?)?.unsqueeze(1)?; // [N, 1, c1]
        a_pre = a_pre.reshape((count, positions, c1))?.broadcast_add(&by_window)?.reshape((count * positions, c1))?;
    }
    let a = a_pre.relu()?.broadcast_mul(&mask)?;
    // conv2's input in its weight's (channel, ky, kx) order.
    let a_grouped = a.reshape((count, positions, c1))?;
    let a2 = a_grouped.transpose(1, 2)?.contiguous()?.reshape((count, c1 * positions))?;
    let b_pre = a2.matmul(&w2.t()?)?.broadcast_add(conv2.bias())?;
    let b = b_pre.relu()?;
    let a_centre = a_grouped.narrow(1, centre, 1)?.squeeze(1)?;
    let q = Tensor::cat(&[&a_centre, &b], 1)?;
    let z = q.matmul(&w_out.t()?)?.broadcast_add(out.bias())?.reshape((count, k, 1, 1))?;
    let loss_value = objective.loss(&z, targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let dz = objective.gradient(&z, targets)?.reshape((count, k))?;
    let mut grads = HashMap::new();

    grads.insert("out.weight".to_string(), dz.t()?.matmul(&q)?.reshape((k, c1 + c2, 1, 1))?);
    grads.insert("out.bias".to_string(), dz.sum(0)?);
    let dq = dz.matmul(&w_out)?;

    let db_pre = (dq.narrow(1, c1, c2)? * relu_mask(&b_pre)?)?;
    grads.insert("conv2.weight".to_string(), db_pre.t()?.matmul(&a2)?.reshape((c2, c1, k2, k2))?);
    grads.insert("conv2.bias".to_string(), db_pre.sum(0)?);
    let da2 = db_pre.matmul(&w2)?.reshape((count, c1, positions))?.transpose(1, 2)?;
    let at_centre = Tensor::from_vec(
        (0..positions).map(|p| if p == centre { 1f32 } else { 0.0 }).collect(),
        (1, positions, 1),
        windows.device(),
    )?;
    let da = da2.broadcast_add(&dq.narrow(1, 0, c1)?.unsqueeze(1)?.broadcast_mul(&at_centre)?)?;
    let da = da.reshape((count * positions, c1))?;

    let da_pre = (da * relu_mask(&a_pre)?)?.broadcast_mul(&mask)?;
    grads.insert("conv1.weight".to_string(), da_pre.t()?.matmul(&cols)?.reshape((c1, cin, k1, k1))?);
    if scene_weight.is_some() {
        let per_window = da_pre.reshape((count, positions, c1))?.sum(1)?; // [N, c1]
        grads.insert("scene.weight".to_string(), per_window.t()?.matmul(scene)?);
    }
    grads.insert("conv1.bias".to_string(), da_pre.sum(0)?);
    Ok(StepGradients { loss: loss_value, grads })
}

/// A sampled-pixel step: the hypercolumn windows around `pixels` (the head's
/// receptive field), the loss at their centres against `uv`, the pixels'
/// (U, V) bytes as [pixels, 2] (`sampling::targets_at`).
pub fn sampled_gradients(
    model: &Colorizer,
    y: &Tensor,
    pixels: &[Pixel],
    uv: &[u8],
    objective: &Objective,
) -> std::result::Result<StepGradients, ModelError> {
    let targets = objective.targets(uv, (pixels.len(), 1, 1), y.device())?;
    let windows = model.hypercolumn_windows(y, pixels, model.head().config().receptive_field())?;
    let supervision = Supervision::Centres {
        windows: &windows.features,
        targets: &targets,
        inside: &windows.inside,
        scene: &windows.scene,
    };
    Ok(head_gradients(model.head(), supervision, objective)?)
}

fn relu_mask(x: &Tensor) -> Result<Tensor> {
    x.gt(0f32)?.to_dtype(x.dtype())
}

/// A bias gradient: [N, C, H, W] summed to [C]. The pixels are summed first,
/// as one contiguous row per (image, channel): candle's sum over the batch
/// dimension of the whole tensor first was a strided pass 15-20x slower
/// (40 ms of a 460 ms step at 224, batch 1, for conv1's bias).
fn sum_nhw(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h * w))?.sum(2)?.sum(0)
}

/// ∂L/∂x of a stride-1 'same' convolution: the output gradient convolved
/// with the kernel flipped in space and transposed in channels.
fn input_gradient(dy: &Tensor, conv: &Conv2d) -> Result<Tensor> {
    let weight = conv.weight();
    let (_, cin, k, _) = weight.dims4()?;
    let reversed: Vec<u32> = (0..k as u32).rev().collect();
    let reversed = Tensor::new(reversed, weight.device())?;
    let flipped = weight.index_select(&reversed, 2)?.index_select(&reversed, 3)?.transpose(0, 1)?.contiguous()?;
    let zero_bias = Tensor::zeros(cin, weight.dtype(), weight.device())?;
    candle_core::Module::forward(&Conv2d::new(flipped, zero_bias)?, dy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_non_finite_gradient_is_found_even_when_the_loss_is_finite() {
        let d = Device::Cpu;
        let grad = |v: &[f32]| Tensor::new(v, &d).unwrap();
        let mut step = StepGradients {
            loss: 0.5,
            grads: HashMap::from([("a.bias".to_string(), grad(&[1.0, 2.0])), ("b.bias".to_string(), grad(&[0.0]))]),
        };
        assert_eq!(step.non_finite().unwrap(), None);
        step.grads.insert("b.weight".into(), grad(&[1.0, f32::NAN]));
        step.grads.insert("c.weight".into(), grad(&[f32::INFINITY]));
        assert_eq!(step.non_finite().unwrap().as_deref(), Some("the gradient of b.weight is not finite"));
        step.loss = f64::NAN;
        assert_eq!(step.non_finite().unwrap().as_deref(), Some("loss NaN"));
    }
}
