//! The 3x3 stride-1 'same' convolution by Winograd's minimal filtering
//! F(2x2, 3x3) (Lavin and Gray 2016), for wide layers on the CPU.
//!
//! Each 2x2 block of output pixels is computed from the 4x4 block of input
//! around it: with the input tile transformed, V = Bᵀ d B, and the kernel,
//! U = G g Gᵀ, the 16 products U ⊙ V summed over the input channels and
//! transformed back, Y = Aᵀ M A, are the four outputs. The sum over channels
//! of each of the 16 positions is one gemm product, U[ξ] [cout, cin] times
//! V[ξ] [cin, tiles], so the products take 16 multiplications per 4 output
//! pixels where the direct convolution takes 36: the same convolution with
//! 2.25x fewer multiply-adds in gemm, plus the transforms' additions. The
//! result differs from the direct sum only in f32 rounding (tested against
//! the reference to 1e-4 relative on the trunk's value ranges).
//!
//! ```text
//! Bᵀ = | 1  0 -1  0 |     G = | 1    0    0   |     Aᵀ = | 1  1  1  0 |
//!      | 0  1  1  0 |         | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//!      | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//!      | 0  1  0 -1 |         | 0    0    1   |
//! ```
//!
//! Work is cut into pieces of one row of tiles of one image (two output
//! rows): a piece's transformed input [16, cin, tiles] and products
//! [16, cout, tiles] stay in cache, and pieces run in parallel, each gemm on
//! one thread.

use super::buffers::{contiguous_f32, zeroed, SharedOut};
use super::pad::pad_spatial;
use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// Whether `conv2d_same` takes this path: 3x3 kernels between layers wide
/// enough that the products, not the transforms, dominate, on pictures
/// large enough that the tiles' padding is a small share (not the training
/// step's few-pixel windows).
pub fn applies(cin: usize, cout: usize, k: usize, (h, w): (usize, usize)) -> bool {
    k == 3 && cin >= MIN_CHANNELS && cout >= MIN_CHANNELS && h.min(w) >= MIN_SIDE
}

/// Narrowest layer (in and out) taken: the trunk's layers after the first
/// and the head's second (128 -> 16).
const MIN_CHANNELS: usize = 16;

/// Smallest picture side taken.
const MIN_SIDE: usize = 8;

/// A piece's transformed input (or products) is at most about this many
/// floats (1 MB), so that it stays in a core's L2 between the transform and
/// the products; pieces are whole rows of tiles.
const PIECE_FLOATS: usize = 1 << 18;

/// [n, cin, h, w] -> [n, cout, h, w] for a weight [cout, cin, 3, 3] and a
/// bias [cout], on the CPU, without autograd.
pub fn conv3x3_same(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (tiles_y, tiles_x) = (h.div_ceil(2), w.div_ceil(2));
    // One zero row and column before, enough after for whole tiles.
    let padded = pad_spatial(x, [1, 2 * tiles_y + 1 - h, 1, 2 * tiles_x + 1 - w])?;
    padded.apply_op3_no_bwd(&weight.contiguous()?, &bias.contiguous()?, &Winograd2x2 { h, w })
}

struct Winograd2x2 {
    h: usize,
    w: usize,
}

impl candle_core::CustomOp3 for Winograd2x2 {
    fn name(&self) -> &'static str {
        "conv3x3-winograd-2x2"
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
        let (tiles_y, tiles_x) = (h.div_ceil(2), w.div_ceil(2));
        let (n, cin, padded_h, wide) = x_layout.shape().dims4()?;
        let (cout, weight_cin, k, k2) = weight_layout.shape().dims4()?;
        if weight_cin != cin
            || (k, k2) != (3, 3)
            || padded_h != 2 * tiles_y + 2
            || wide != 2 * tiles_x + 2
            || bias_layout.shape().dims1()? != cout
        {
            candle_core::bail!("{}: shapes do not fit together", self.name());
        }
        let x = contiguous_f32(x, x_layout, self.name())?;
        let u = transformed_weight(contiguous_f32(weight, weight_layout, self.name())?, cout, cin);
        let bias = contiguous_f32(bias, bias_layout, self.name())?;
        let mut out = zeroed(n * cout * h * w);
        let shared = SharedOut(out.as_mut_ptr());
        let rows_per_piece = (PIECE_FLOATS / (16 * cin.max(cout)) / tiles_x).clamp(1, tiles_y);
        let tiles = rows_per_piece * tiles_x;
        let pieces = super::convolution::row_pieces(n, tiles_y, rows_per_piece);
        let plane = padded_h * wide;
        pieces.par_iter().for_each_init(
            || (zeroed(16 * cin * tiles), zeroed(16 * cout * tiles), zeroed(4 * tiles_x)),
            |(v, m, two_rows), &(i, first)| {
                let image = &x[i * cin * plane..(i + 1) * cin * plane];
                let rows = rows_per_piece.min(tiles_y - first);
                for r in 0..rows {
                    transform_input(image, (cin, wide, plane), first + r, tiles_x, v, (tiles, r * tiles_x));
                }
                for xi in 0..16 {
                    // SAFETY: m[ξ] is [cout, tiles] (row stride tiles), u[ξ]
                    // [cout, cin] (row stride cin), v[ξ] [cin, tiles] (row
                    // stride tiles), all inside their buffers.
                    unsafe {
                        gemm::gemm(
                            cout,
                            rows * tiles_x,
                            cin,
                            m.as_mut_ptr().add(xi * cout * tiles),
                            1,
                            tiles as isize,
                            false,
                            u.as_ptr().add(xi * cout * cin),
                            1,
                            cin as isize,
                            v.as_ptr().add(xi * cin * tiles),
                            1,
                            tiles as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                for r in 0..rows {
                    let ty = first + r;
                    let both = 2 * ty + 1 < h;
                    for (o, &b) in bias.iter().enumerate() {
                        transform_output(m, (o, cout), (tiles, r * tiles_x), tiles_x, b, two_rows);
                        let (top, bottom) = two_rows.split_at(2 * tiles_x);
                        let at = (i * cout + o) * h * w + 2 * ty * w;
                        // SAFETY: image i, channel o, output rows 2ty (and
                        // 2ty + 1 when inside), w values each: only this
                        // piece writes them.
                        unsafe {
                            std::ptr::copy_nonoverlapping(top.as_ptr(), shared.at(at), w);
                            if both {
                                std::ptr::copy_nonoverlapping(bottom.as_ptr(), shared.at(at + w), w);
                            }
                        }
                    }
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (n, cout, h, w).into()))
    }
}

/// U[ξ][o][c] = (G g Gᵀ)[ξ] for every kernel g = weight[o, c]: [16, cout, cin].
fn transformed_weight(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * cout * cin];
    for (oc, g) in weight.chunks_exact(9).enumerate() {
        // G g: [4, 3], one row of G against g's columns.
        let mut gg = [[0f32; 3]; 4];
        for col in 0..3 {
            let (a, b, c) = (g[col], g[3 + col], g[6 + col]);
            gg[0][col] = a;
            gg[1][col] = 0.5 * (a + b + c);
            gg[2][col] = 0.5 * (a - b + c);
            gg[3][col] = c;
        }
        // (G g) Gᵀ: [4, 4].
        for (r, row) in gg.iter().enumerate() {
            let [a, b, c] = *row;
            let transformed = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            for (col, value) in transformed.into_iter().enumerate() {
                u[(r * 4 + col) * cout * cin + oc] = value;
            }
        }
    }
    u
}

/// V[ξ][c][offset + t] = (Bᵀ d B)[ξ] for every channel c and tile t of the
/// row of tiles `ty`, d the padded input's 4x4 block at (2ty, 2t); V's rows
/// are `tiles` long. Bᵀ d combines the block's four rows, the same for
/// every tile, so it is done a whole padded row at a time (`e`); B then
/// combines each tile's four columns.
fn transform_input(
    image: &[f32],
    (cin, wide, plane): (usize, usize, usize),
    ty: usize,
    tiles_x: usize,
    v: &mut [f32],
    (tiles, offset): (usize, usize),
) {
    let stride = cin * tiles;
    let mut e = vec![0f32; wide];
    for c in 0..cin {
        let start = c * plane + 2 * ty * wide;
        let block = &image[start..start + 4 * wide];
        let (d0, rest) = block.split_at(wide);
        let (d1, rest) = rest.split_at(wide);
        let (d2, d3) = rest.split_at(wide);
        for r in 0..4 {
            for (k, out) in e.iter_mut().enumerate() {
                *out = match r {
                    0 => d0[k] - d2[k],
                    1 => d1[k] + d2[k],
                    2 => d2[k] - d1[k],
                    _ => d1[k] - d3[k],
                };
            }
            // Tile t reads e[2t .. 2t + 4]: its own pair and the next.
            let pairs = e.chunks_exact(2);
            let next = e[2..].chunks_exact(2);
            for col in 0..4 {
                let at = (r * 4 + col) * stride + c * tiles + offset;
                let dst = &mut v[at..at + tiles_x];
                for ((out, a), b) in dst.iter_mut().zip(pairs.clone()).zip(next.clone()) {
                    *out = match col {
                        0 => a[0] - b[0],
                        1 => a[1] + b[0],
                        2 => b[0] - a[1],
                        _ => a[1] - b[1],
                    };
                }
            }
        }
    }
}

/// Output channel o's two rows of one row of tiles (2·tiles_x values
/// each, into `two_rows`), Aᵀ M A per tile plus the bias; the row's
/// products start at `offset` in M's rows of `tiles`.
fn transform_output(
    m: &[f32],
    (o, cout): (usize, usize),
    (tiles, offset): (usize, usize),
    tiles_x: usize,
    bias: f32,
    two_rows: &mut [f32],
) {
    let at = |xi: usize| &m[(xi * cout + o) * tiles + offset..][..tiles_x];
    let (top, bottom) = two_rows.split_at_mut(2 * tiles_x);
    // Aᵀ M: row 0 sums M's rows 0-2, row 1 is M's row 1 - row 2 - row 3,
    // for each of the four columns; then A combines the columns.
    for (out, sign) in [(top, 1.0f32), (bottom, -1.0)] {
        let (r0, r1, r2) = if sign > 0.0 { (0, 4, 8) } else { (4, 8, 12) };
        let col = |c: usize| at(r0 + c).iter().zip(at(r1 + c)).zip(at(r2 + c));
        let combine = move |((a, b), c): ((&f32, &f32), &f32)| if sign > 0.0 { a + b + c } else { a - b - c };
        let (c0, c1, c2, c3) = (col(0).map(combine), col(1).map(combine), col(2).map(combine), col(3).map(combine));
        for (pair, (((p0, p1), p2), p3)) in out.chunks_exact_mut(2).zip(c0.zip(c1).zip(c2).zip(c3)) {
            pair[0] = p0 + p1 + p2 + bias;
            pair[1] = p1 - p2 - p3 + bias;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The direct sum, in f64 plain loops: an independent reference.
    fn direct(x: &[f32], weight: &[f32], bias: &[f32], (n, cin, h, w): (usize, usize, usize, usize)) -> Vec<f64> {
        let cout = bias.len();
        let mut y = vec![0f64; n * cout * h * w];
        for i in 0..n {
            for o in 0..cout {
                for r in 0..h {
                    for col in 0..w {
                        let mut sum = f64::from(bias[o]);
                        for c in 0..cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (yy, xx) = (r as isize + ky as isize - 1, col as isize + kx as isize - 1);
                                    if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                                        let input = x[((i * cin + c) * h + yy as usize) * w + xx as usize];
                                        let k = weight[((o * cin + c) * 3 + ky) * 3 + kx];
                                        sum += f64::from(input) * f64::from(k);
                                    }
                                }
                            }
                        }
                        y[((i * cout + o) * h + r) * w + col] = sum;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn equals_the_direct_sum_on_odd_and_even_sizes() {
        let d = Device::Cpu;
        // Odd sizes leave half tiles at the bottom and the right.
        for (n, cin, cout, h, w) in [(2, 5, 7, 6, 8), (1, 4, 3, 7, 9), (2, 3, 2, 1, 1), (1, 33, 40, 11, 10)] {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &d).unwrap();
            let weight = Tensor::randn(0f32, 1.0, (cout, cin, 3, 3), &d).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &d).unwrap();
            let got: Vec<f32> = conv3x3_same(&x, &weight, &bias).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = direct(&flat(&x), &flat(&weight), &flat(&bias), (n, cin, h, w));
            // Rounding grows with the sum's length (9·cin terms of size ~1).
            let tolerance = 1e-5 * (9.0 * cin as f64).sqrt() * 4.0;
            for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((f64::from(*g) - e).abs() < tolerance, "{n}x{cin}->{cout} {h}x{w} at {k}: {g} vs {e}");
            }
        }
    }
}
