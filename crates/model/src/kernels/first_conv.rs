//! The head's first convolution, computed from the hypercolumn's parts at
//! their own resolution: the same numbers as convolving the dense
//! hypercolumn, for a quarter of the arithmetic.
//!
//! A coarse part g (conv2_2 at 1/2, conv3_3 at 1/4 of the size) enters the
//! hypercolumn upsampled, U(g). Upsampling mixes pixels, never channels, and
//! a kernel tap W_t mixes channels, never pixels, so they commute:
//!
//! ```text
//! conv1(U g)(p) = Σ_t W_t · (U g)(p + t) = Σ_t U(W_t · g)(p + t)
//! ```
//!
//! The products W_t · g run at the part's own size, where there are 4 or
//! 16 times fewer pixels; what is upsampled and shifted is their result
//! (c1 channels per tap), by two sparse passes (`resample`), streamed a
//! coarse row at a time (`coarse_rows`). At 224 px the first convolution
//! falls from 52 to 13 GFLOP. Its weight gradient is the
//! adjoint: the output gradient goes through the transposed passes down to
//! the part's size, where one matrix product with g gives every tap.
//!
//! The parts at full size (the input and conv1_2) go through `Conv2d` as
//! before. A deeper trunk's parts (conv4_3 at 1/8, conv5_3 at 1/16) take
//! the same identity with plain tensor ops (`add_deeper_part`): their
//! products are 64 and 256 times smaller than the dense part's. Off the CPU
//! the dense hypercolumn is built and convolved.

use super::channels_last::to_channels_last;
use super::coarse_rows::{add_coarse_parts, coarse_weight_gradient, CoarsePart};
use super::resample::{column_operator, row_operator};
use super::weight_gradient::weight_gradient;
use crate::conv::Conv2d;
use crate::hypercolumn::HypercolumnParts;
use candle_core::{DType, Module, Result, Tensor};

fn on_parts(parts: &HypercolumnParts) -> bool {
    let mut tensors = vec![&parts.full];
    tensors.extend(&parts.coarse);
    super::fast_cpu(&tensors)
}

/// `first_conv` as a plain convolution of the dense hypercolumn: the
/// reference path.
pub fn reference(conv: &Conv2d, parts: &HypercolumnParts) -> Result<Tensor> {
    conv.forward(&parts.dense()?)
}

/// `first_conv_weight_gradient` on the dense hypercolumn: the reference path.
pub fn weight_gradient_reference(parts: &HypercolumnParts, dy: &Tensor, k: usize) -> Result<Tensor> {
    super::weight_gradient::reference(&parts.dense()?, dy, k)
}

/// conv1 (any odd k, 'same' padding, bias) of the hypercolumn: [n, c1, h, w].
pub fn first_conv(conv: &Conv2d, parts: &HypercolumnParts) -> Result<Tensor> {
    // The method's hypercolumn has two coarse parts (conv2_2, conv3_3);
    // `coarse_rows` is written for exactly two, and a deeper trunk's
    // follow them.
    if !on_parts(parts) || parts.coarse.len() < 2 {
        return reference(conv, parts);
    }
    // No autograd through the passes: the weights' gradient is
    // `first_conv_weight_gradient`'s.
    let weight = conv.weight().detach();
    let k = weight.dim(2)?;
    let (_, h, w) = parts.size()?;
    let full_channels = parts.full.dim(1)?;
    let full = Conv2d::new(weight.narrow(1, 0, full_channels)?, conv.bias().detach())?;
    let mut sum = full.forward(&parts.full)?; // [n, c1, h, w], contiguous
    let mut offset = full_channels;
    let mut operators = Vec::with_capacity(2);
    let mut taps = Vec::with_capacity(2);
    for part in &parts.coarse[..2] {
        let (_, c, ph, pw) = part.dims4()?;
        // [c, (ky, kx, c1)]: every tap's weight for the part's channels.
        let weights = weight.narrow(1, offset, c)?.permute((1, 2, 3, 0))?.contiguous()?;
        taps.push(weights.flatten_all()?.to_vec1::<f32>()?);
        operators.push((column_operator(w, pw, k), row_operator(h, ph, k)));
        offset += c;
    }
    let coarse: Vec<CoarsePart<'_>> =
        taps.into_iter().zip(&operators).map(|(taps, (columns, rows))| CoarsePart { taps, columns, rows }).collect();
    let [a, b] = &coarse[..] else {
        candle_core::bail!("first_conv: coarse_rows takes two coarse parts");
    };
    let last_a = channels_last(&parts.coarse[0])?;
    let last_b = channels_last(&parts.coarse[1])?;
    add_coarse_parts(&sum, [(a, &last_a), (b, &last_b)])?;
    for part in &parts.coarse[2..] {
        let c = part.dim(1)?;
        sum = add_deeper_part(sum, part, &weight.narrow(1, offset, c)?)?;
        offset += c;
    }
    Ok(sum)
}

/// `sum` [n, c1, h, w] + the share of a coarse part g [n, c, ph, pw] in a
/// 'same' convolution of the upsampled U(g) by `weight` [c1, c, k, k]:
/// Σ over taps t of U(W_t · g) shifted by t, zero outside the picture.
fn add_deeper_part(mut sum: Tensor, g: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (n, c1, h, w) = sum.dims4()?;
    let (_, c, ph, pw) = g.dims4()?;
    let k = weight.dim(2)?;
    let half = k / 2;
    // [n, (ky, kx, c1), ph, pw]: every tap's product at the part's size.
    let taps = weight.permute((2, 3, 0, 1))?.reshape((k * k * c1, c))?;
    let flat = g.permute((0, 2, 3, 1))?.reshape((n * ph * pw, c))?;
    let products = flat.matmul(&taps.t()?)?.reshape((n, ph, pw, k * k * c1))?.permute((0, 3, 1, 2))?;
    for t in 0..k * k {
        let (ky, kx) = (t / k, t % k);
        let up = products.narrow(1, t * c1, c1)?.contiguous()?.upsample_bilinear2d(h, w, false)?;
        // Output (y, x) reads U(W_t g) at (y + ky − half, x + kx − half).
        let padded = up.pad_with_zeros(2, half, half)?.pad_with_zeros(3, half, half)?;
        sum = (sum + padded.narrow(2, ky, h)?.narrow(3, kx, w)?)?;
    }
    Ok(sum)
}

/// ∂L/∂W of `first_conv` for the output gradient `dy` [n, c1, h, w]:
/// [c1, 451, k, k].
pub fn first_conv_weight_gradient(parts: &HypercolumnParts, dy: &Tensor, k: usize) -> Result<Tensor> {
    if !on_parts(parts) {
        return weight_gradient_reference(parts, dy, k);
    }
    let (n, c1, h, w) = dy.dims4()?;
    let mut grads = vec![weight_gradient(&parts.full, dy, k)?];
    let operators: Vec<_> = parts
        .coarse
        .iter()
        .map(|part| {
            let (_, _, ph, pw) = part.dims4()?;
            Ok((column_operator(w, pw, k).transpose(), row_operator(h, ph, k).transpose()))
        })
        .collect::<Result<_>>()?;
    // Image by image, summed: whole-batch buffers (231 MB for conv2_2's at
    // 224, batch 4) made this 4x slower than the images one at a time.
    let mut d_taps: Vec<Option<Tensor>> = vec![None; parts.coarse.len()];
    for i in 0..n {
        let dy_last = channels_last(&dy.narrow(0, i, 1)?)?; // [Y·X, c1]
        for ((part, (columns_t, rows_t)), sum) in parts.coarse.iter().zip(&operators).zip(&mut d_taps) {
            let g = channels_last(&part.narrow(0, i, 1)?)?; // [y·x, c]
            let image = coarse_weight_gradient(&g, &dy_last, columns_t, rows_t, k)?; // [c, (ky, kx, c1)]
            *sum = Some(match sum.take() {
                None => image,
                Some(s) => (s + image)?,
            });
        }
    }
    for (part, sum) in parts.coarse.iter().zip(d_taps) {
        let c = part.dim(1)?;
        let sum = sum.map_or_else(|| Tensor::zeros((c, k * k * c1), DType::F32, dy.device()), Ok)?;
        grads.push(sum.reshape((c, k, k, c1))?.permute((3, 0, 1, 2))?);
    }
    Tensor::cat(&grads, 1)?.contiguous()
}

/// [n, c, h, w] -> [n·h·w, c]
fn channels_last(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    to_channels_last(&x.contiguous()?)?.reshape((n * h * w, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::convolution;
    use candle_core::Device;

    fn parts(n: usize, s: usize) -> HypercolumnParts {
        deep_parts(n, s, 0)
    }

    /// `parts` with `deeper` more coarse parts, at 1/8 and 1/16 of the size
    /// (a deeper trunk's conv4_3 and conv5_3).
    fn deep_parts(n: usize, s: usize, deeper: usize) -> HypercolumnParts {
        let d = Device::Cpu;
        let part = |c: usize, side: usize| Tensor::randn(0f32, 1.0, (n, c, side, side), &d).unwrap();
        let mut coarse = vec![part(4, s / 2), part(6, s / 4)];
        coarse.extend([(3, 8), (2, 16)].into_iter().take(deeper).map(|(c, f)| part(c, s / f)));
        let scene = crate::hypercolumn::scene_vector(&coarse[1]).unwrap();
        HypercolumnParts { full: part(5, s), coarse, scene }
    }

    /// A convolution with random weights and biases.
    fn random_conv(cout: usize, cin: usize, k: usize) -> Conv2d {
        let d = Device::Cpu;
        Conv2d::new(
            Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap(),
            Tensor::randn(0f32, 1.0, cout, &d).unwrap(),
        )
        .unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn on_the_parts_equals_candles_convolution_of_the_dense_hypercolumn() {
        // One image of 64 or 40 px on a 4-thread pool: its output rows
        // split into stretches (`coarse_rows`), which share coarse rows.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        for (n, k, s) in [(2, 3, 16), (2, 1, 8), (2, 5, 12), (1, 3, 64), (1, 5, 40), (3, 3, 40)] {
            let p = parts(n, s);
            let conv = random_conv(7, 15, k);
            let fast = pool.install(|| first_conv(&conv, &p)).unwrap();
            let stock = convolution::reference(&p.dense().unwrap(), conv.weight(), conv.bias()).unwrap();
            assert_eq!(fast.dims(), stock.dims());
            let diff = max_difference(&fast, &stock);
            assert!(diff < 1e-4, "n{n} k{k} s{s}: {diff}");
            let diff = max_difference(&reference(&conv, &p).unwrap(), &stock);
            assert!(diff < 1e-4, "reference k{k} s{s}: {diff}");
        }
    }

    #[test]
    fn a_deeper_trunks_parts_add_what_the_dense_hypercolumn_does() {
        for (deeper, k, s) in [(1, 3, 32), (2, 3, 64), (2, 5, 48), (2, 1, 32)] {
            let p = deep_parts(2, s, deeper);
            let channels = p.dense().unwrap().dim(1).unwrap();
            let conv = random_conv(7, channels, k);
            let fast = first_conv(&conv, &p).unwrap();
            let stock = convolution::reference(&p.dense().unwrap(), conv.weight(), conv.bias()).unwrap();
            let diff = max_difference(&fast, &stock);
            assert!(diff < 1e-4, "{deeper} deeper, k{k} s{s}: {diff}");
        }
    }

    #[test]
    fn its_weight_gradient_equals_autograd_through_the_dense_hypercolumn() {
        let d = Device::Cpu;
        // 64 px: conv2_2's part has 32 coarse rows, more than one piece of
        // `coarse_weight_gradient` (14 rows of 32), the last one short.
        for (k, s, deeper) in [(3, 16, 0), (5, 8, 0), (3, 64, 0), (3, 32, 2)] {
            let p = deep_parts(2, s, deeper);
            let channels = p.dense().unwrap().dim(1).unwrap();
            let weight = candle_core::Var::randn(0f32, 1.0, (3, channels, k, k), &d).unwrap();
            let conv = Conv2d::new(weight.as_tensor().clone(), Tensor::zeros(3, DType::F32, &d).unwrap()).unwrap();
            let y = convolution::reference(&p.dense().unwrap(), conv.weight(), conv.bias()).unwrap();
            let dy = Tensor::randn(0f32, 1.0, y.dims(), &d).unwrap();
            let auto = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            let auto = auto.get(&weight).unwrap();
            let scale = auto.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let fast = first_conv_weight_gradient(&p, &dy, k).unwrap();
            let reference = weight_gradient_reference(&p, &dy, k).unwrap();
            for (path, hand) in [("fast", fast), ("reference", reference)] {
                let diff = max_difference(&hand, auto);
                assert!(diff < 1e-4 * scale, "{path} k{k} s{s}: {diff} of {scale}");
            }
        }
    }
}
