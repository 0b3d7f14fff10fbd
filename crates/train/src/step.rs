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

use crate::config::Loss;
use crate::loss::{loss, loss_gradient};
use candle_core::{DType, Result, Tensor, D};
use colorize_model::conv::{pad_spatial, Conv2d};
use colorize_model::hypercolumn::Pixel;
use colorize_model::{Colorizer, HypercolumnHead, ModelError};
use std::collections::HashMap;

/// The loss and the gradient of every head variable, by name.
pub struct StepGradients {
    pub loss: f64,
    pub grads: HashMap<String, Tensor>,
}

/// What a step is trained on.
#[derive(Clone, Copy, Debug)]
pub enum Supervision<'a> {
    /// Every pixel: the input is dense hypercolumns [n, 451, h, w], the
    /// targets [n, 2, h, w].
    Dense { targets: &'a Tensor },
    /// Sampled pixels: the input is windows [N, 451, r, r] around them (see
    /// `hypercolumn_patches`), the targets [N, 2, 1, 1] at their centres,
    /// `inside` [N, 1, r, r] marks the window positions in the image.
    /// Zeroing conv1's output outside the image makes the window's centre
    /// equal the dense head's output there, so the gradients from the
    /// centres alone are exactly the dense ones with the loss at those pixels.
    Centres { targets: &'a Tensor, inside: &'a Tensor },
}

/// Forward and backward of the head on `t` against targets in [0, 1].
pub fn head_gradients(
    head: &HypercolumnHead,
    t: &Tensor,
    supervision: Supervision<'_>,
    kind: Loss,
) -> Result<StepGradients> {
    // The head's weights are trainable `Var`s; detached copies keep this
    // step's tensors (and the gradients returned) free of autograd graphs.
    let [conv1, conv2, out] = head.convs().map(|c| Conv2d::new(c.weight().detach(), c.bias().detach()));
    let (conv1, conv2, out) = (&conv1, &conv2, &out);
    let c1 = conv1.weight().dim(0)?;
    let c2 = conv2.weight().dim(0)?;
    // Windows run side by side, as one image [1, 451, r, N·r]: one large
    // matrix product per kernel tap instead of N tiny ones. Exact: the
    // centre's output reads only its own window (r is the receptive field),
    // and nothing outside a window reaches its centre's gradients either.
    let (t, inside, centres) = match supervision {
        Supervision::Dense { .. } => (t.clone(), None, None),
        Supervision::Centres { inside, .. } => {
            let (count, _, r, r2) = t.dims4()?;
            if r != r2 || r.is_multiple_of(2) {
                candle_core::bail!("windows [{count}, _, {r}, {r2}] are not square with a centre pixel");
            }
            let centres: Vec<u32> = (0..count).map(|i| ((r / 2) * count * r + i * r + r / 2) as u32).collect();
            let centres = Tensor::from_vec(centres, count, t.device())?;
            (side_by_side(t)?, Some(side_by_side(inside)?), Some(centres))
        }
    };
    let t = &t;
    let (n, _, h, w) = t.dims4()?;
    let in_image = |x: Tensor| -> Result<Tensor> {
        match &inside {
            None => Ok(x),
            Some(mask) => x.broadcast_mul(mask),
        }
    };

    let a_pre = candle_core::Module::forward(conv1, t)?;
    let a = in_image(a_pre.relu()?)?;
    let b_pre = candle_core::Module::forward(conv2, &a)?;
    let b = b_pre.relu()?;
    let q = Tensor::cat(&[&a, &b], 1)?;
    let z = candle_core::Module::forward(out, &q)?;
    let targets = match supervision {
        Supervision::Dense { targets } | Supervision::Centres { targets, .. } => targets,
    };
    let (loss_value, dz) = match &centres {
        Some(centres) => {
            let count = centres.dim(0)?;
            let flat = z.reshape((2, h * w))?;
            let centre = flat.index_select(centres, 1)?.t()?.reshape((count, 2, 1, 1))?;
            let loss_value = loss(kind, &centre, targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let d_centre = loss_gradient(kind, &centre, targets)?.reshape((count, 2))?.t()?.contiguous()?;
            let dz = flat.zeros_like()?.index_add(centres, &d_centre, 1)?.reshape((1, 2, h, w))?;
            (loss_value, dz)
        }
        None => {
            let loss_value = loss(kind, &z, targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            (loss_value, loss_gradient(kind, &z, targets)?)
        }
    };
    let mut grads = HashMap::new();

    // out: 1x1 convolution, a matrix product per pixel.
    let dz_flat = dz.reshape((n, 2, h * w))?;
    let q_flat = q.reshape((n, c1 + c2, h * w))?;
    let d_out_w = dz_flat.matmul(&q_flat.transpose(1, 2)?)?.sum(0)?.reshape((2, c1 + c2, 1, 1))?;
    grads.insert("out.weight".to_string(), d_out_w);
    grads.insert("out.bias".to_string(), sum_nhw(&dz)?);
    let w_out_t = out.weight().reshape((2, c1 + c2))?.t()?;
    let dq = w_out_t.broadcast_matmul(&dz_flat)?.reshape((n, c1 + c2, h, w))?;

    // conv2, through its ReLU.
    let db_pre = (dq.narrow(1, c1, c2)? * relu_mask(&b_pre)?)?;
    grads.insert("conv2.weight".to_string(), weight_gradient(&a, &db_pre, conv2)?);
    grads.insert("conv2.bias".to_string(), sum_nhw(&db_pre)?);
    let da = (dq.narrow(1, 0, c1)? + input_gradient(&db_pre, conv2)?)?;

    // conv1, through its ReLU: the weight gradient only (T is constant).
    let da_pre = in_image((da * relu_mask(&a_pre)?)?)?;
    grads.insert("conv1.weight".to_string(), weight_gradient(t, &da_pre, conv1)?);
    grads.insert("conv1.bias".to_string(), sum_nhw(&da_pre)?);
    Ok(StepGradients { loss: loss_value, grads })
}

/// A sampled-pixel step: the hypercolumn windows around `pixels` (the head's
/// receptive field), the loss at their centres against `targets` ((U, V) /
/// 255 per pixel, row-major).
pub fn sampled_gradients(
    model: &Colorizer,
    y: &Tensor,
    pixels: &[Pixel],
    targets: Vec<f32>,
    kind: Loss,
) -> std::result::Result<StepGradients, ModelError> {
    let targets = Tensor::from_vec(targets, (pixels.len(), 2, 1, 1), y.device())?;
    let windows = model.hypercolumn_windows(y, pixels, model.head().config().receptive_field())?;
    let supervision = Supervision::Centres { targets: &targets, inside: &windows.inside };
    Ok(head_gradients(model.head(), &windows.features, supervision, kind)?)
}

/// [N, C, r, r] windows -> one [1, C, r, N·r] image, window i in columns
/// i·r .. (i+1)·r.
fn side_by_side(windows: &Tensor) -> Result<Tensor> {
    let (count, c, r, _) = windows.dims4()?;
    windows.permute((1, 2, 0, 3))?.reshape((1, c, r, count * r))
}

fn relu_mask(x: &Tensor) -> Result<Tensor> {
    x.gt(0f32)?.to_dtype(x.dtype())
}

fn sum_nhw(x: &Tensor) -> Result<Tensor> {
    x.sum(0)?.sum(D::Minus1)?.sum(D::Minus1)
}

/// ∂L/∂W of a stride-1 'same' convolution, one kernel tap at a time:
/// dW[:, :, ky, kx] = Σ_images dy · shift(x, ky, kx)ᵀ, a matrix product over
/// the pixels. (Candle's own backward correlates x with dy as a k x k
/// convolution whose im2col buffer is k²·n·h·w per input channel: 800 MB for
/// the first head layer at 224.)
fn weight_gradient(x: &Tensor, dy: &Tensor, conv: &Conv2d) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let cout = dy.dim(1)?;
    let k = conv.weight().dim(3)?;
    let pad = k / 2;
    let wide = w + 2 * pad;
    // Same wide layout as `Conv2d::forward`: dy gets zero columns where the
    // wide grid has no output, and each tap's input is one slice of x.
    let flat = pad_spatial(x, [pad, pad + 1, pad, pad])?.reshape((n, cin, (h + 2 * pad + 1) * wide))?;
    let dy = pad_spatial(dy, [0, 0, 0, 2 * pad])?.reshape((n, cout, h * wide))?;
    let mut taps = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            let shifted = flat.narrow(2, ky * wide + kx, h * wide)?;
            taps.push(dy.matmul(&shifted.transpose(1, 2)?)?.sum(0)?); // [cout, cin]
        }
    }
    Tensor::stack(&taps, 2)?.reshape((cout, cin, k, k))
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
    candle_core::Module::forward(&Conv2d::new(flipped, zero_bias), dy)
}
