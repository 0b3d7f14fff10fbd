//! `Conv2d`: the single convolution seam of the model.
//!
//! Every convolution of the trunk and the head is one of these, so a faster
//! kernel replaces the body of `forward` and nothing else.
//!
//! The body is a sum over the k² kernel taps of one matrix product each:
//! y[n, :, p] = Σ_taps W[:, :, ky, kx] · x_padded[n, :, p + (ky, kx)], which
//! keeps all the arithmetic in gemm. On the CPU, when no gradient is
//! tracked (inference, the trunk, the training step's own backward), the
//! taps' inputs are stacked a few rows of pixels at a time and multiplied by
//! the whole weight in one product (`PiecewiseColumns`); with autograd the
//! taps' products are candle matmuls summed as tensors, so candle can
//! differentiate them. Candle's own CPU `conv2d` (`stock_conv2d`, kept as the
//! reference) builds and zeroes im2col tiles on every call and ran at under
//! 2 GFLOP/s on the head's shapes here. (An earlier kernel accumulated the
//! k² products in the output through gemm; per layer of the network,
//! side by side, the pieces were 0.96-5.9x its speed, 1.1-1.5x for most.)

use candle_core::{Module, Result, Tensor};
use rayon::prelude::*;

/// A stride-1 convolution with "same" padding and a bias.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// [out, in, k, k]
    weight: Tensor,
    /// [out]
    bias: Tensor,
}

impl Conv2d {
    /// A stride-1 'same' convolution. The weight must be [out, in, k, k]
    /// with k odd and the bias [out]: the kernels below trust these sizes
    /// (an even or non-square kernel would reach gemm with the wrong ones).
    pub fn new(weight: Tensor, bias: Tensor) -> candle_core::Result<Conv2d> {
        let dims = weight.dims();
        let square_odd = matches!(dims, [_, _, k, k2] if k == k2 && k % 2 == 1);
        if !square_odd {
            candle_core::bail!("a convolution weight must be [out, in, k, k] with k odd, not {dims:?}");
        }
        if bias.dims() != [dims[0]] {
            candle_core::bail!("a convolution bias must be [{}], not {:?}", dims[0], bias.dims());
        }
        Ok(Conv2d { weight, bias })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    fn padding(&self) -> usize {
        self.weight.dim(3).unwrap_or(1) / 2
    }
}

impl Module for Conv2d {
    /// [n, in, h, w] -> [n, out, h, w]
    ///
    /// The input is padded once, with one extra row at the bottom, and
    /// flattened: the input under kernel tap (ky, kx) for every output pixel
    /// of a row-major "wide" grid (w + 2p columns) is then the single slice
    /// starting at ky·(w + 2p) + kx, which candle's matmul reads in place.
    /// The 2p extra columns of the result are dropped at the end.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, cin, h, w) = x.dims4()?;
        let (cout, _, k, _) = self.weight.dims4()?;
        let bias = self.bias.reshape((1, (), 1, 1))?;
        if k == 1 {
            let y = self.weight.reshape((cout, cin))?.broadcast_matmul(&x.reshape((n, cin, h * w))?)?;
            return y.reshape((n, cout, h, w))?.broadcast_add(&bias);
        }
        let pad = self.padding();
        let wide = w + 2 * pad;
        let padded = pad_spatial(x, [pad, pad + 1, pad, pad])?;
        let tracked = x.track_op() || self.weight.track_op() || self.bias.track_op();
        if padded.device().is_cpu() && padded.dtype() == candle_core::DType::F32 && !tracked {
            return padded.apply_op3_no_bwd(&self.weight.contiguous()?, &self.bias, &PiecewiseColumns { h, w });
        }
        let flat = padded.reshape((n, cin, (h + 2 * pad + 1) * wide))?;
        let mut sum: Option<Tensor> = None;
        for ky in 0..k {
            for kx in 0..k {
                let tap = self.weight.narrow(2, ky, 1)?.narrow(3, kx, 1)?.contiguous()?.reshape((cout, cin))?;
                let part = tap.broadcast_matmul(&flat.narrow(2, ky * wide + kx, h * wide)?)?;
                sum = Some(match sum {
                    Some(acc) => (acc + part)?,
                    None => part,
                });
            }
        }
        let y = sum.expect("a kernel has at least one tap").reshape((n, cout, h, wide))?.narrow(3, 0, w)?;
        y.broadcast_add(&bias)
    }
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

/// A pointer shared by the tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own piece's columns.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` values on. (A method, so that a closure captures
    /// the whole `SharedOut`, not its raw pointer field.)
    ///
    /// # Safety
    /// `offset` must lie in the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

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
                    gemm::gemm(
                        cout,
                        pixels,
                        depth + 1,
                        shared.at(i * cout * h * w + first_row * w),
                        1,
                        (h * w) as isize,
                        false,
                        weight_and_bias.as_ptr(),
                        1,
                        (depth + 1) as isize,
                        columns.as_ptr(),
                        1,
                        piece_len as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (n, cout, h, w).into()))
    }
}

/// Each image's output rows cut into pieces of `rows_per_piece` rows:
/// (image, first row) of each.
fn row_pieces(n: usize, h: usize, rows_per_piece: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|i| (0..h).step_by(rows_per_piece).map(move |row| (i, row))).collect()
}

/// A batch padded as `Conv2d::forward` pads it, [n, cin, plane] with
/// `plane` = (h + 2p + 1)·`wide`, read by the piecewise kernels.
struct PaddedInput<'a> {
    x: &'a [f32],
    cin: usize,
    k: usize,
    w: usize,
    wide: usize,
    plane: usize,
}

impl PaddedInput<'_> {
    /// The input under each (channel, kernel tap), for `rows` output rows
    /// of image `i` from `first_row`, into the first cin·k² rows of
    /// `columns` (row length `piece_len`): an image row's w values at a time.
    fn copy_columns(&self, i: usize, first_row: usize, rows: usize, columns: &mut [f32], piece_len: usize) {
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

/// `a` += `b`: the threads' partial weight gradients summed.
/// Consecutive groups a reduction over pieces is split into (fewer when
/// there are fewer pieces): enough to keep a few cores busy.
const SUM_GROUPS: usize = 8;

/// Σ over `pieces` of what `add_piece` adds into a `len`-float sum, in an
/// order fixed by the number of pieces alone: the pieces are cut into
/// `SUM_GROUPS` consecutive groups, each summed in order on some thread
/// (with its own `scratch`), and the groups' sums are added in group order.
/// So f32 rounding, and the gradient, is the same whatever the threads and
/// their work stealing (rayon's `fold`/`reduce` split where the threads
/// happen to be).
fn fixed_order_sum<T: Sync, S>(
    pieces: &[T],
    len: usize,
    scratch: impl Fn() -> S + Sync,
    add_piece: impl Fn(&T, &mut [f32], &mut S) + Sync,
) -> Vec<f32> {
    let per_group = pieces.len().div_ceil(SUM_GROUPS).max(1);
    let groups: Vec<Vec<f32>> = pieces
        .par_chunks(per_group)
        .map(|group| {
            let (mut acc, mut scratch) = (zeroed(len), scratch());
            for piece in group {
                add_piece(piece, &mut acc, &mut scratch);
            }
            acc
        })
        .collect();
    let mut groups = groups.into_iter();
    let mut total = groups.next().unwrap_or_else(|| zeroed(len));
    for group in groups {
        total.iter_mut().zip(&group).for_each(|(a, b)| *a += b);
    }
    total
}

/// A zeroed buffer whose pages this thread has already written. `vec![0; n]`
/// maps fresh pages that are faulted in on first write; when rayon's
/// threads take those faults at once, a pass over a new 20-40 MB buffer ran
/// 3 to 8 times slower here (`resample`'s, one run side by side).
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut buffer = Vec::new();
    buffer.resize(len, 0f32);
    buffer
}

/// A custom op's input as a plain slice.
pub fn contiguous_f32<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    op: &str,
) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op} takes contiguous f32 tensors"),
    }
}

/// A custom op's in-place operand as a plain mutable slice.
pub fn contiguous_f32_mut<'a>(
    storage: &'a mut candle_core::CpuStorage,
    layout: &candle_core::Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{op} takes contiguous f32 tensors"),
    }
}

/// Zero padding of the two spatial dimensions by [top, bottom, left, right]:
/// one pass on the CPU (candle's `pad_with_zeros` concatenates, several
/// times slower), candle's op elsewhere. Differentiable.
pub fn pad_spatial(x: &Tensor, [top, bottom, left, right]: [usize; 4]) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.apply_op1(ZeroPad2d { top, bottom, left, right })
    } else {
        x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)
    }
}

struct ZeroPad2d {
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
}

impl candle_core::CustomOp1 for ZeroPad2d {
    fn name(&self) -> &'static str {
        "zero-pad-2d"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let src = contiguous_f32(storage, layout, self.name())?;
        let (ph, pw) = (h + self.top + self.bottom, w + self.left + self.right);
        let mut out = vec![0f32; n * c * ph * pw];
        for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(ph * pw)) {
            for (row, line) in plane.chunks_exact(w).enumerate() {
                let at = (row + self.top) * pw + self.left;
                dst[at..at + w].copy_from_slice(line);
            }
        }
        Ok((candle_core::CpuStorage::F32(out), (n, c, ph, pw).into()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, ph, pw) = grad.dims4()?;
        let inner = grad.narrow(2, self.top, ph - self.top - self.bottom)?;
        Ok(Some(inner.narrow(3, self.left, pw - self.left - self.right)?))
    }
}

/// ∂L/∂W of a stride-1 'same' k x k convolution of `x` whose output
/// gradient is `dy`, one kernel tap at a time: dW[:, :, ky, kx] =
/// Σ_images dy · shift(x, ky, kx)ᵀ, a matrix product over the pixels.
/// (Candle's own backward correlates x with dy as a k x k convolution whose
/// im2col buffer is k²·n·h·w per input channel: 800 MB for the first head
/// layer at 224.)
pub fn weight_gradient(x: &Tensor, dy: &Tensor, k: usize) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let cout = dy.dim(1)?;
    let pad = k / 2;
    let wide = w + 2 * pad;
    // Same wide layout as `Conv2d::forward`: dy gets zero columns where the
    // wide grid has no output, and each tap's input is one slice of x.
    let padded = pad_spatial(x, [pad, pad + 1, pad, pad])?;
    if padded.device().is_cpu() && padded.dtype() == candle_core::DType::F32 {
        // Pieces make one product as wide as cin·k² per piece, taps k²
        // products as wide as cin, over longer pieces of pixels. Measured
        // side by side at 224: pieces 1.3-1.9x faster for the head's first
        // layer (128 channels out), taps 1.1-1.3x for its second (16 out).
        if cout >= 64 {
            return padded.apply_op2_no_bwd(&dy.contiguous()?, &PiecewiseWeightGradient { k });
        }
        let dy = pad_spatial(dy, [0, 0, 0, 2 * pad])?;
        return padded.apply_op2_no_bwd(&dy, &TapWeightGradient { k });
    }
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
/// added at the end. Inputs: x padded as `Conv2d::forward` pads it [n, cin,
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
                    gemm::gemm(
                        cout,
                        depth,
                        pixels,
                        acc.as_mut_ptr(),
                        1,
                        depth as isize,
                        true,
                        grad.as_ptr(),
                        1,
                        (h * w) as isize,
                        columns.as_ptr(),
                        piece_len as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
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
/// as `Conv2d::forward` pads it [n, cin, h + 2p + 1, w + 2p] and dy [n,
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
                        gemm::gemm(
                            cout,
                            cin,
                            pixels,
                            acc.as_mut_ptr().add(tap),
                            (k * k) as isize,
                            (cin * k * k) as isize,
                            true,
                            grad.as_ptr(),
                            1,
                            span as isize,
                            image.as_ptr().add(start),
                            plane as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (cout, cin, k, k).into()))
    }
}

/// Candle's stock convolution plus the bias: the reference the fast path is
/// tested against.
pub fn stock_conv2d(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let y = x.conv2d(&conv.weight, conv.padding(), 1, 1, 1)?;
    y.broadcast_add(&conv.bias.reshape((1, (), 1, 1))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn padding_is_exact_and_differentiable() {
        let d = Device::Cpu;
        let x = candle_core::Var::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &d).unwrap();
        let p = pad_spatial(x.as_tensor(), [1, 2, 0, 1]).unwrap();
        let want = x.as_tensor().pad_with_zeros(2, 1, 2).unwrap().pad_with_zeros(3, 0, 1).unwrap();
        assert_eq!(p.to_vec3::<f32>().ok(), None); // 4-d
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let grads = (p * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), [3.0; 4]);
    }

    #[test]
    fn the_weight_gradient_equals_autograd_through_candles_convolution() {
        let d = Device::Cpu;
        // 70 x 60 pictures: more pixels per image than one piece of either
        // CPU reduction, so pieces and images are both summed; 64 channels
        // out take the piecewise one, fewer the tap-wise.
        for (cin, cout, k, h, w) in [(5, 7, 3, 70, 60), (3, 64, 3, 70, 60), (3, 4, 5, 9, 6), (4, 2, 1, 5, 5)] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &d).unwrap();
            let weight = candle_core::Var::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap();
            let conv = Conv2d::new(weight.as_tensor().clone(), Tensor::zeros(cout, DType::F32, &d).unwrap()).unwrap();
            let y = stock_conv2d(&conv, &x).unwrap();
            let dy = Tensor::randn(0f32, 1.0, y.dims(), &d).unwrap();
            let grads = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            let auto = grads.get(&weight).unwrap();
            let hand = weight_gradient(&x, &dy, k).unwrap();
            let scale = auto.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let diff = (hand - auto).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5 * scale, "{cin}->{cout} k{k} {h}x{w}: {diff} of {scale}");
        }
    }

    #[test]
    fn a_weight_that_is_not_an_odd_square_kernel_is_refused() {
        let d = Device::Cpu;
        let zeros = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &d).unwrap();
        for dims in [&[4, 3, 2, 2][..], &[4, 3, 3, 1], &[4, 3, 3], &[4, 3, 5, 3]] {
            let err = Conv2d::new(zeros(dims), zeros(&[4])).expect_err("refused");
            assert!(err.to_string().contains("k odd"), "{dims:?}: {err}");
        }
        assert!(Conv2d::new(zeros(&[4, 3, 3, 3]), zeros(&[3])).is_err(), "a bias of the wrong size");
        assert!(Conv2d::new(zeros(&[4, 3, 3, 3]), zeros(&[4])).is_ok());
    }

    #[test]
    fn the_tap_sum_equals_candles_convolution() {
        let d = Device::Cpu;
        // 20 x 30: several pieces of `PiecewiseColumns` and a remainder.
        for (cin, cout, k, h, w) in [(5, 7, 3, 9, 6), (4, 3, 1, 5, 5), (3, 2, 5, 8, 11), (4, 6, 3, 20, 30)] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &d).unwrap();
            let conv = Conv2d::new(
                Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap(),
                Tensor::randn(0f32, 1.0, cout, &d).unwrap(),
            )
            .unwrap();
            let fast = conv.forward(&x).unwrap();
            let stock = stock_conv2d(&conv, &x).unwrap();
            let diff = (&fast - stock).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{cin}->{cout} k{k}: {diff}");
            // With a variable weight (autograd on) the taps are summed as
            // tensors instead of stacked into pieces: same result.
            let weight = candle_core::Var::from_tensor(conv.weight()).unwrap();
            let tracked = Conv2d::new(weight.as_tensor().clone(), conv.bias().clone()).unwrap().forward(&x).unwrap();
            let diff = (fast - tracked).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "tracked {cin}->{cout} k{k}: {diff}");
        }
    }
}
