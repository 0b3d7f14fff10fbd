//! A convolution's weight gradient, `weight_gradient`.

use super::buffers::{contiguous_f32, fixed_order_sum, zeroed};
use super::convolution::{row_pieces, PaddedInput};
use super::pad::pad_spatial;
use super::product::{product, Strided};
use candle_core::{Result, Tensor};

/// ∂L/∂W of a stride-1 'same' k x k convolution of `x` whose output
/// gradient is `dy`, one kernel tap at a time: dW[:, :, ky, kx] =
/// Σ_images dy · shift(x, ky, kx)ᵀ, a matrix product over the pixels.
/// (Candle's own backward correlates x with dy as a k x k convolution whose
/// im2col buffer is k²·n·h·w per input channel: 800 MB for the first head
/// layer at 224.)
pub fn weight_gradient(x: &Tensor, dy: &Tensor, k: usize) -> Result<Tensor> {
    if !super::fast_cpu(&[x, dy]) {
        return reference(x, dy, k);
    }
    let pad = k / 2;
    let padded = pad_spatial(x, [pad, pad + 1, pad, pad])?;
    // Pieces make one product as wide as cin·k² per piece, taps k²
    // products as wide as cin, over longer pieces of pixels. Measured
    // side by side at 224: pieces 1.3-1.9x faster for the head's first
    // layer (128 channels out), taps 1.1-1.3x for its second (16 out).
    if dy.dim(1)? >= 64 {
        return padded.apply_op2_no_bwd(&dy.contiguous()?, &PiecewiseWeightGradient { k });
    }
    let dy = pad_spatial(dy, [0, 0, 0, 2 * pad])?;
    padded.apply_op2_no_bwd(&dy, &TapWeightGradient { k })
}

/// `weight_gradient` in candle's ops, one product per kernel tap. In the
/// wide layout of `conv2d_same`'s tap sum, dy gets zero columns where the
/// wide grid has no output, and each tap's input is one slice of x.
pub fn reference(x: &Tensor, dy: &Tensor, k: usize) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let cout = dy.dim(1)?;
    let pad = k / 2;
    let wide = w + 2 * pad;
    let padded = pad_spatial(x, [pad, pad + 1, pad, pad])?;
    let dy = pad_spatial(dy, [0, 0, 0, 2 * pad])?;
    let flat = padded.reshape((n, cin, (h + 2 * pad + 1) * wide))?;
    let dy = dy.reshape((n, cout, h * wide))?;
    let mut taps = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            let shifted = flat.narrow(2, ky * wide + kx, h * wide)?;
            taps.push(dy.matmul(&shifted.transpose(1, 2)?)?.sum(0)?); // [cout, cin]
        }
    }
    Tensor::stack(&taps, 2)?.reshape((cout, cin, k, k))
}

/// `weight_gradient` on the CPU, as `PiecewiseColumns` runs the forward: per
/// piece of output rows, the columns [cin·k², pixels] are copied out of the
/// padded input and dW [cout, cin·k²] += dy[:, piece] · columnsᵀ, one gemm.
/// Each thread sums its pieces into its own gradient; the threads' are
/// added at the end. Inputs: x padded as `conv2d_same` pads it [n, cin,
/// h + 2p + 1, w + 2p] and dy [n, cout, h, w]; output [cout, cin, k, k].
struct PiecewiseWeightGradient {
    k: usize,
}

/// Output pixels per piece of `PiecewiseWeightGradient` (whole rows, at least one).
const GRADIENT_PIECE: usize = 1024;

impl candle_core::CustomOp2 for PiecewiseWeightGradient {
    fn name(&self) -> &'static str {
        "conv2d-piecewise-weight-gradient"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        dy: &candle_core::CpuStorage,
        dy_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let k = self.k;
        let pad = k / 2;
        let (n, cin, padded_h, wide) = x_layout.shape().dims4()?;
        let (dy_n, cout, h, w) = dy_layout.shape().dims4()?;
        if dy_n != n || wide != w + 2 * pad || padded_h != h + 2 * pad + 1 {
            candle_core::bail!("{}: shapes do not fit together", self.name());
        }
        let x = contiguous_f32(x, x_layout, self.name())?;
        let dy = contiguous_f32(dy, dy_layout, self.name())?;
        let plane = padded_h * wide;
        let depth = cin * k * k;
        let rows_per_piece = (GRADIENT_PIECE / w).clamp(1, h);
        let piece_len = rows_per_piece * w;
        let input = PaddedInput { x, cin, k, w, wide, plane };
        let out = fixed_order_sum(
            &row_pieces(n, h, rows_per_piece),
            cout * depth,
            || zeroed(depth * piece_len),
            |&(i, first_row), acc, columns| {
                let rows = rows_per_piece.min(h - first_row);
                let pixels = rows * w;
                input.copy_columns(i, first_row, rows, columns, piece_len);
                let grad = &dy[i * cout * h * w + first_row * w..];
                debug_assert!((cout - 1) * h * w + pixels <= grad.len());
                // SAFETY: dst is acc [cout, depth]; lhs is dy's piece,
                // cout x pixels (row stride h·w); rhs is the columns
                // transposed, pixels x depth (column stride piece_len):
                // all in bounds (above).
                unsafe {
                    product(
                        (cout, depth, pixels),
                        Strided::rows(acc.as_mut_ptr(), depth),
                        true,
                        Strided::rows(grad.as_ptr(), h * w),
                        Strided::columns(columns.as_ptr(), piece_len),
                    );
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (cout, cin, k, k).into()))
    }
}

/// `weight_gradient` on the CPU for narrow layers: each tap's product over a
/// piece of pixels accumulated by gemm, reading the shifted input where it
/// lies (the tensor path copies every tap's transposed slice first). Inputs: x padded
/// as `conv2d_same` pads it [n, cin, h + 2p + 1, w + 2p] and dy [n,
/// cout, h, w + 2p] (zero in its last 2p columns); output [cout, cin, k, k].
struct TapWeightGradient {
    k: usize,
}

impl candle_core::CustomOp2 for TapWeightGradient {
    fn name(&self) -> &'static str {
        "conv2d-tap-weight-gradient"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        dy: &candle_core::CpuStorage,
        dy_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let k = self.k;
        let (n, cin, padded_h, wide) = x_layout.shape().dims4()?;
        let (dy_n, cout, h, dy_wide) = dy_layout.shape().dims4()?;
        if dy_n != n || dy_wide != wide || padded_h != h + 2 * (k / 2) + 1 {
            candle_core::bail!("{}: shapes do not fit together", self.name());
        }
        let x = contiguous_f32(x, x_layout, self.name())?;
        let dy = contiguous_f32(dy, dy_layout, self.name())?;
        let plane = padded_h * wide;
        let span = h * wide;
        // The reduction runs over every pixel of every image: split into
        // pieces of pixels, each thread sums its pieces into its own
        // gradient, and the threads' gradients are added at the end. (One
        // gemm over all the pixels parallelises over the small cout x cin
        // output instead, and ran slower than candle's per-tap matmuls.)
        const PIECE: usize = 4096;
        let pieces: Vec<(usize, usize)> =
            (0..n).flat_map(|i| (0..span).step_by(PIECE).map(move |from| (i, from))).collect();
        let len = cout * cin * k * k;
        let out = fixed_order_sum(
            &pieces,
            len,
            || (),
            |&(i, from), acc, _| {
                let pixels = PIECE.min(span - from);
                let image = &x[i * cin * plane..(i + 1) * cin * plane];
                let grad = &dy[i * cout * span + from..];
                for tap in 0..k * k {
                    let start = (tap / k) * wide + tap % k + from;
                    debug_assert!((cin - 1) * plane + start + pixels <= image.len());
                    debug_assert!((cout - 1) * span + pixels <= grad.len());
                    // SAFETY: dst is the tap's [cout, cin] column of acc
                    // (strides cin·k², k² from offset `tap`); lhs is the
                    // piece of dy, cout x pixels (row stride span); rhs
                    // is pixels x cin, the shifted input (column stride
                    // `plane` from `start`): in bounds (above).
                    unsafe {
                        product(
                            (cout, cin, pixels),
                            Strided {
                                ptr: acc.as_mut_ptr().add(tap),
                                row_step: (cin * k * k) as isize,
                                col_step: (k * k) as isize,
                            },
                            true,
                            Strided::rows(grad.as_ptr(), span),
                            Strided::columns(image.as_ptr().add(start), plane),
                        );
                    }
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (cout, cin, k, k).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::convolution;
    use candle_core::Device;

    #[test]
    fn the_weight_gradient_equals_autograd_through_candles_convolution() {
        let d = Device::Cpu;
        // 70 x 60 pictures: more pixels per image than one piece of either
        // CPU reduction, so pieces and images are both summed; 64 channels
        // out take the piecewise one, fewer the tap-wise.
        for (cin, cout, k, h, w) in [(5, 7, 3, 70, 60), (3, 64, 3, 70, 60), (3, 4, 5, 9, 6), (4, 2, 1, 5, 5)] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &d).unwrap();
            let weight = candle_core::Var::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap();
            let bias = Tensor::zeros(cout, candle_core::DType::F32, &d).unwrap();
            let y = convolution::reference(&x, weight.as_tensor(), &bias).unwrap();
            let dy = Tensor::randn(0f32, 1.0, y.dims(), &d).unwrap();
            let grads = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            let auto = grads.get(&weight).unwrap();
            let scale = auto.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            for (path, hand) in [("fast", weight_gradient(&x, &dy, k)), ("reference", reference(&x, &dy, k))] {
                let diff =
                    (hand.unwrap() - auto).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-5 * scale, "{path} {cin}->{cout} k{k} {h}x{w}: {diff} of {scale}");
            }
        }
    }
}
