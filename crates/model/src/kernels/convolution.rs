//! The stride-1 'same' convolution with a bias, `conv2d_same`.
//!
//! The arithmetic is a sum over the k² kernel taps of one matrix product
//! each: y[n, :, p] = Σ_taps W[:, :, ky, kx] · x_padded[n, :, p + (ky, kx)],
//! which keeps it all in gemm. Three paths:
//! - on the CPU without autograd (inference, the trunk, the training step's
//!   own backward), 3x3 kernels between wide layers by Winograd's F(2x2,
//!   3x3) (`winograd`, 2.25x fewer multiply-adds), the rest with the taps'
//!   inputs stacked a few rows of pixels at a time and multiplied by the
//!   whole weight in one product (`PiecewiseColumns`);
//! - on the CPU with autograd, the taps' products are candle matmuls summed
//!   as tensors (`tap_sum`), so candle can differentiate them;
//! - elsewhere, the reference: candle's `conv2d` (cuDNN with the `cudnn`
//!   feature). Candle's CPU `conv2d` builds and zeroes im2col tiles on every
//!   call and ran at under 2 GFLOP/s on the head's shapes here. (An earlier
//!   kernel accumulated the k² products in the output through gemm; per
//!   layer of the network, side by side, the pieces were 0.96-5.9x its
//!   speed, 1.1-1.5x for most.)
//!
//! The weight must be [out, in, k, k] with k odd and the bias [out]
//! (`Conv2d::new` checks): the kernels trust these sizes.

use super::buffers::{contiguous_f32, zeroed, SharedOut};
use super::pad::pad_spatial;
use super::product::{product, Strided};
use candle_core::{Result, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;

/// [n, in, h, w] -> [n, out, h, w] for a weight [out, in, k, k] (k odd) and
/// a bias [out].
pub fn conv2d_same(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    conv2d_same_prepared(x, weight, bias, None)
}

/// `conv2d_same` for a weight that does not change between calls: what a
/// kernel prepares from it (Winograd's transformed weight) is kept in
/// `prepared`. The caller guarantees the weight is the same at every call.
pub fn conv2d_same_prepared(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    prepared: Option<&OnceLock<Tensor>>,
) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let (cout, _, k, _) = weight.dims4()?;
    if k == 1 {
        // One matrix product on every device.
        let y = weight.reshape((cout, cin))?.broadcast_matmul(&x.reshape((n, cin, h * w))?)?;
        return y.reshape((n, cout, h, w))?.broadcast_add(&bias.reshape((1, (), 1, 1))?);
    }
    if !super::fast_cpu(&[x, weight, bias]) {
        return reference(x, weight, bias);
    }
    let pad = k / 2;
    let tracked = x.track_op() || weight.track_op() || bias.track_op();
    if !tracked && super::winograd::applies(cin, cout, k, (h, w)) {
        // Winograd pads the input its own way (whole tiles).
        let Some(cell) = prepared else { return super::winograd::conv3x3_same(x, weight, bias) };
        let u = match cell.get() {
            Some(u) => u.clone(),
            None => {
                let u = super::winograd::transform_weight(weight)?;
                cell.get_or_init(|| u).clone()
            }
        };
        return super::winograd::conv3x3_prepared(x, &u, bias);
    }
    let padded = pad_spatial(x, [pad, pad + 1, pad, pad])?;
    if tracked {
        return tap_sum(&padded, weight, bias, (h, w));
    }
    padded.apply_op3_no_bwd(&weight.contiguous()?, bias, &PiecewiseColumns { h, w })
}

/// Candle's convolution plus the bias: the reference path.
pub fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let y = x.conv2d(weight, weight.dim(3)? / 2, 1, 1, 1)?;
    y.broadcast_add(&bias.reshape((1, (), 1, 1))?)
}

/// The convolution with autograd, as k² tensor products. The input, padded
/// with one extra row at the bottom, is read flattened: the input under
/// kernel tap (ky, kx) for every output pixel of a row-major "wide" grid
/// (w + 2p columns) is then the single slice starting at ky·(w + 2p) + kx,
/// which candle's matmul reads in place. The 2p extra columns of the result
/// are dropped at the end.
fn tap_sum(padded: &Tensor, weight: &Tensor, bias: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    let (n, cin, padded_h, wide) = padded.dims4()?;
    let (cout, _, k, _) = weight.dims4()?;
    let flat = padded.reshape((n, cin, padded_h * wide))?;
    let mut sum = Tensor::zeros((n, cout, h * wide), weight.dtype(), weight.device())?;
    for ky in 0..k {
        for kx in 0..k {
            let tap = weight.narrow(2, ky, 1)?.narrow(3, kx, 1)?.contiguous()?.reshape((cout, cin))?;
            sum = (sum + tap.broadcast_matmul(&flat.narrow(2, ky * wide + kx, h * wide)?)?)?;
        }
    }
    sum.reshape((n, cout, h, wide))?.narrow(3, 0, w)?.broadcast_add(&bias.reshape((1, (), 1, 1))?)
}

/// The convolution on the CPU without autograd, as one product per piece of
/// output rows: the piece's columns [cin·k² + 1, pixels] are copied out of
/// the padded input (a row of w values per image row, kernel tap and
/// channel), with a last row of ones, and multiplied by the weight with the
/// bias as its last column [cout, cin·k² + 1]. One product with a long inner
/// dimension instead of k² that each read and write the output, pieces
/// small enough to stay in cache, and the result written once, in place in
/// the output. Pieces run in parallel, each gemm on one thread.
struct PiecewiseColumns {
    h: usize,
    w: usize,
}

/// Output pixels per piece of `PiecewiseColumns` (whole rows, at least one).
const COLUMN_PIECE: usize = 256;

impl candle_core::CustomOp3 for PiecewiseColumns {
    fn name(&self) -> &'static str {
        "conv2d-piecewise-columns"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        weight: &candle_core::CpuStorage,
        weight_layout: &candle_core::Layout,
        bias: &candle_core::CpuStorage,
        bias_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (h, w) = (self.h, self.w);
        let (n, cin, padded_h, wide) = x_layout.shape().dims4()?;
        let (cout, weight_cin, k, _) = weight_layout.shape().dims4()?;
        let pad = k / 2;
        if weight_cin != cin
            || padded_h != h + 2 * pad + 1
            || wide != w + 2 * pad
            || bias_layout.shape().dims1()? != cout
        {
            candle_core::bail!("{}: shapes do not fit together", self.name());
        }
        let x = contiguous_f32(x, x_layout, self.name())?;
        let weight = contiguous_f32(weight, weight_layout, self.name())?;
        let bias = contiguous_f32(bias, bias_layout, self.name())?;
        let plane = padded_h * wide;
        let depth = cin * k * k;
        // [cout, depth + 1]: the bias multiplies the columns' row of ones.
        let weight_and_bias: Vec<f32> = weight
            .chunks_exact(depth)
            .zip(bias)
            .flat_map(|(row, b)| row.iter().chain(std::iter::once(b)))
            .copied()
            .collect();
        let rows_per_piece = (COLUMN_PIECE / w).clamp(1, h);
        let piece_len = rows_per_piece * w;
        let mut out = zeroed(n * cout * h * w);
        let shared = SharedOut(out.as_mut_ptr());
        let input = PaddedInput { x, cin, k, w, wide, plane };
        row_pieces(n, h, rows_per_piece).par_iter().for_each_init(
            || {
                let mut columns = zeroed((depth + 1) * piece_len);
                columns[depth * piece_len..].fill(1.0);
                columns
            },
            |columns, &(i, first_row)| {
                let rows = rows_per_piece.min(h - first_row);
                let pixels = rows * w;
                input.copy_columns(i, first_row, rows, columns, piece_len);
                // SAFETY: dst is image i's output [cout, h·w] from pixel
                // first_row·w, `pixels` wide (row stride h·w): no other piece
                // writes there. lhs is [cout, depth + 1], rhs the piece's
                // columns [depth + 1, pixels] (row stride piece_len).
                unsafe {
                    product(
                        (cout, pixels, depth + 1),
                        Strided::rows(shared.at(i * cout * h * w + first_row * w), h * w),
                        false,
                        Strided::rows(weight_and_bias.as_ptr(), depth + 1),
                        Strided::rows(columns.as_ptr(), piece_len),
                    );
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (n, cout, h, w).into()))
    }
}

/// Each image's output rows cut into pieces of `rows_per_piece` rows:
/// (image, first row) of each.
pub(super) fn row_pieces(n: usize, h: usize, rows_per_piece: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|i| (0..h).step_by(rows_per_piece).map(move |row| (i, row))).collect()
}

/// A batch padded as `conv2d_same` pads it, [n, cin, plane] with
/// `plane` = (h + 2p + 1)·`wide`, read by the piecewise kernels.
pub(super) struct PaddedInput<'a> {
    pub x: &'a [f32],
    pub cin: usize,
    pub k: usize,
    pub w: usize,
    pub wide: usize,
    pub plane: usize,
}

impl PaddedInput<'_> {
    /// The input under each (channel, kernel tap), for `rows` output rows
    /// of image `i` from `first_row`, into the first cin·k² rows of
    /// `columns` (row length `piece_len`): an image row's w values at a time.
    pub fn copy_columns(&self, i: usize, first_row: usize, rows: usize, columns: &mut [f32], piece_len: usize) {
        let PaddedInput { x, cin, k, w, wide, plane } = *self;
        let image = &x[i * cin * plane..(i + 1) * cin * plane];
        for (index, column) in columns.chunks_exact_mut(piece_len).take(cin * k * k).enumerate() {
            let (c, tap) = (index / (k * k), index % (k * k));
            let (ky, kx) = (tap / k, tap % k);
            for (r, dst) in column.chunks_exact_mut(w).take(rows).enumerate() {
                let start = c * plane + (first_row + r + ky) * wide + kx;
                dst.copy_from_slice(&image[start..start + w]);
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn both_cpu_paths_equal_the_reference() {
        let d = Device::Cpu;
        // 20 x 30: several pieces of `PiecewiseColumns` and a remainder.
        for (cin, cout, k, h, w) in [(5, 7, 3, 9, 6), (4, 3, 1, 5, 5), (3, 2, 5, 8, 11), (4, 6, 3, 20, 30)] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &d).unwrap();
            let weight = Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &d).unwrap();
            let want = reference(&x, &weight, &bias).unwrap();
            let fast = conv2d_same(&x, &weight, &bias).unwrap();
            assert!(max_difference(&fast, &want) < 1e-4, "pieces {cin}->{cout} k{k}");
            // With a variable weight (autograd on) the taps are summed as
            // tensors instead of stacked into pieces: same result.
            let tracked = candle_core::Var::from_tensor(&weight).unwrap();
            let summed = conv2d_same(&x, tracked.as_tensor(), &bias).unwrap();
            assert!(max_difference(&summed, &want) < 1e-4, "tap sum {cin}->{cout} k{k}");
            // Forced to the reference, the CPU runs what a GPU runs.
            let _scope = super::super::ReferenceScope::enter();
            let forced = conv2d_same(&x, &weight, &bias).unwrap();
            assert_eq!(max_difference(&forced, &want), 0.0, "forced {cin}->{cout} k{k}");
        }
    }

    #[test]
    fn wide_3x3_layers_take_winograd_and_the_rest_the_columns() {
        let d = Device::Cpu;
        let (cin, cout, side) = (128, 128, 56);
        assert!(super::super::winograd::applies(cin, cout, 3, (side, side)));
        assert!(!super::super::winograd::applies(64, 64, 3, (32, 32)));
        let x = Tensor::randn(0f32, 1.0, (1, cin, side, side), &d).unwrap();
        let weight = Tensor::randn(0f32, 0.05, (cout, cin, 3, 3), &d).unwrap();
        let bias = Tensor::randn(0f32, 1.0, cout, &d).unwrap();
        let dispatched = conv2d_same(&x, &weight, &bias).unwrap();
        let winograd = super::super::winograd::conv3x3_same(&x, &weight, &bias).unwrap();
        assert_eq!(max_difference(&dispatched, &winograd), 0.0, "conv2d_same ran F(2x2, 3x3)");
        // And it agrees with the stacked columns to rounding.
        let columns = pad_spatial(&x, [1, 2, 1, 1])
            .unwrap()
            .apply_op3_no_bwd(&weight, &bias, &PiecewiseColumns { h: side, w: side })
            .unwrap();
        assert!(max_difference(&dispatched, &columns) < 1e-4);
        // A frozen layer's transformed weight is made once and reused.
        let prepared = OnceLock::new();
        let first = conv2d_same_prepared(&x, &weight, &bias, Some(&prepared)).unwrap();
        let kept = prepared.get().expect("the transformed weight is kept").clone();
        assert_eq!(kept.dims(), [16, cout, cin]);
        let again = conv2d_same_prepared(&x, &weight, &bias, Some(&prepared)).unwrap();
        assert!(prepared.get().is_some_and(|u| u.id() == kept.id()), "not made again");
        assert_eq!(max_difference(&first, &dispatched), 0.0);
        assert_eq!(max_difference(&again, &dispatched), 0.0);
    }
}
