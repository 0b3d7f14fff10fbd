//! The 3x3 stride-1 'same' convolution by Winograd's minimal filtering
//! F(m x m, 3x3) (Lavin and Gray 2016), for wide layers on the CPU.
//!
//! Each m x m block of output pixels is computed from the (m + 2)² block of
//! input around it: with the input tile transformed, V = Bᵀ d B, and the
//! kernel, U = G g Gᵀ, the (m + 2)² products U ⊙ V summed over the input
//! channels and transformed back, Y = Aᵀ M A, are the block's outputs. The
//! sum over channels at each of the (m + 2)² positions ξ is one gemm
//! product, U[ξ] [cout, cin] times V[ξ] [cin, tiles]. Per output pixel that
//! is 4 multiply-adds per channel pair for F(2x2), against the direct
//! convolution's 9: the same convolution with fewer products in gemm, plus
//! the transforms' additions. The result differs
//! from the direct sum in f32 rounding only (tested against plain f64
//! loops).
//!
//! ```text
//! F(2x2, 3x3):
//! Bᵀ = | 1  0 -1  0 |     G = | 1    0    0   |     Aᵀ = | 1  1  1  0 |
//!      | 0  1  1  0 |         | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//!      | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//!      | 0  1  0 -1 |         | 0    0    1   |
//! ```
//!
//! Work is cut into pieces of whole rows of tiles of one image: a piece's
//! transformed input [ξ, cin, tiles] and products [ξ, cout, tiles] stay in
//! a core's L2, and pieces run in parallel, each gemm on one thread.

use super::buffers::{contiguous_f32, zeroed, SharedOut};
use super::pad::pad_spatial;
use super::product::{product, Strided};
use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// Whether `conv2d_same` takes this path: 3x3 kernels where the products
/// (h·w·cin·cout) are large enough to repay the transforms and the
/// weight's transform per call. Measured per layer against the stacked
/// columns, one image, both cores, best of 7 alternating: 1.03-1.46x on
/// the trunk's shapes at 224 and the head's (README), 0.7-0.9x at 64x64 x
/// 64 x 64 and 16x16 x 256 x 256 (the training trunk at 64 px).
pub fn applies(cin: usize, cout: usize, k: usize, (h, w): (usize, usize)) -> bool {
    k == 3 && h.min(w) >= 8 && h * w * cin * cout >= MIN_PRODUCT
}

/// Smallest h·w·cin·cout taken (56x56 x 128 x 128).
const MIN_PRODUCT: usize = 56 * 56 * 128 * 128;

/// A piece's transformed input (or products) is at most about this many
/// floats (1 MB), so that it stays in a core's L2 between the transform and
/// the products; pieces are whole rows of tiles.
const PIECE_FLOATS: usize = 1 << 18;

/// One of the minimal filtering algorithms: its output block side `M`,
/// input block side `A` = M + 2, and its three matrices (above), row-major.
trait Tiling {
    const M: usize;
    const A: usize;
    /// Bᵀ, [A, A].
    const BT: &'static [f32];
    /// Aᵀ, [M, A].
    const AT: &'static [f32];
    /// G, [A, 3].
    const G: &'static [f32];
}

/// F(2x2, 3x3).
struct F2;

impl Tiling for F2 {
    const M: usize = 2;
    const A: usize = 4;
    #[rustfmt::skip]
    const BT: &'static [f32] = &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ];
    #[rustfmt::skip]
    const AT: &'static [f32] = &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ];
    #[rustfmt::skip]
    const G: &'static [f32] = &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ];
}

/// The nonzero coefficients of row r of a row-major matrix `columns` wide:
/// (column, value). The transforms are sums of a few scaled rows or
/// columns, each a pass that vectorises; zeros cost nothing.
fn nonzero(matrix: &'static [f32], columns: usize, r: usize) -> impl Iterator<Item = (usize, f32)> {
    matrix[r * columns..(r + 1) * columns].iter().copied().enumerate().filter(|&(_, c)| c != 0.0)
}

/// [n, cin, h, w] -> [n, cout, h, w] for a weight [cout, cin, 3, 3] and a
/// bias [cout], on the CPU, without autograd, by F(2x2, 3x3). (F(4x4, 3x3),
/// 2.25 products per output instead of 4, was no faster here: its
/// transforms took what its products saved.)
pub fn conv3x3_same(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    conv3x3_prepared(x, &transform_weight(weight)?, bias)
}

/// The weight [cout, cin, 3, 3] as `conv3x3_prepared` takes it, U = G g Gᵀ
/// per kernel, [16, cout, cin]: for a frozen layer, made once (at 256 x 256
/// channels it is a few ms, a tenth of the layer at 56 px).
pub fn transform_weight(weight: &Tensor) -> Result<Tensor> {
    let (cout, cin, k, k2) = weight.dims4()?;
    if (k, k2) != (3, 3) {
        candle_core::bail!("a Winograd F(2x2, 3x3) weight must be 3x3, not {k}x{k2}");
    }
    let g = weight.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let u = transformed_weight::<F2>(&g, cout, cin);
    Tensor::from_vec(u, (F2::A * F2::A, cout, cin), weight.device())
}

/// `conv3x3_same` with the weight already transformed (`transform_weight`).
pub fn conv3x3_prepared(x: &Tensor, u: &Tensor, bias: &Tensor) -> Result<Tensor> {
    conv3x3_by::<F2>(x, u, bias)
}

fn conv3x3_by<T: Tiling>(x: &Tensor, u: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (tiles_y, tiles_x) = (h.div_ceil(T::M), w.div_ceil(T::M));
    // One zero row and column before, enough after for whole tiles.
    let padded = pad_spatial(x, [1, T::M * tiles_y + 1 - h, 1, T::M * tiles_x + 1 - w])?;
    let op = WinogradOp::<T> { h, w, tiling: std::marker::PhantomData };
    padded.apply_op3_no_bwd(&u.contiguous()?, &bias.contiguous()?, &op)
}

struct WinogradOp<T> {
    h: usize,
    w: usize,
    tiling: std::marker::PhantomData<T>,
}

impl<T: Tiling> candle_core::CustomOp3 for WinogradOp<T> {
    fn name(&self) -> &'static str {
        "conv3x3-winograd"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        u: &candle_core::CpuStorage,
        u_layout: &candle_core::Layout,
        bias: &candle_core::CpuStorage,
        bias_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (h, w, m, positions) = (self.h, self.w, T::M, T::A * T::A);
        let (tiles_y, tiles_x) = (h.div_ceil(m), w.div_ceil(m));
        let (n, cin, padded_h, wide) = x_layout.shape().dims4()?;
        let (u_positions, cout, u_cin) = u_layout.shape().dims3()?;
        if u_cin != cin
            || u_positions != positions
            || padded_h != m * tiles_y + 2
            || wide != m * tiles_x + 2
            || bias_layout.shape().dims1()? != cout
        {
            candle_core::bail!("{}: shapes do not fit together", self.name());
        }
        let x = contiguous_f32(x, x_layout, self.name())?;
        let u = contiguous_f32(u, u_layout, self.name())?;
        let bias = contiguous_f32(bias, bias_layout, self.name())?;
        let mut out = zeroed(n * cout * h * w);
        let shared = SharedOut(out.as_mut_ptr());
        // Pieces that fit in L2, and at least two per thread where the
        // picture has the rows (a 16 px picture is one piece otherwise).
        let fits = PIECE_FLOATS / (positions * cin.max(cout)) / tiles_x;
        let spread = (n * tiles_y).div_ceil(2 * rayon::current_num_threads());
        let rows_per_piece = fits.min(spread).clamp(1, tiles_y);
        let tiles = rows_per_piece * tiles_x;
        let pieces = super::convolution::row_pieces(n, tiles_y, rows_per_piece);
        let plane = padded_h * wide;
        let scratch = || {
            let transformed = zeroed(positions * cin * tiles);
            let products = zeroed(positions * cout * tiles);
            let input_scratch = (zeroed(T::A * wide), zeroed(m * (tiles_x + 1)));
            let output_scratch = (zeroed(m * m * tiles_x), zeroed(T::A * tiles_x), zeroed(m * tiles_x));
            (transformed, products, input_scratch, output_scratch)
        };
        pieces.par_iter().for_each_init(
            scratch,
            |(v, p, (e, phases), (block_rows, columns, out_phases)), &(i, first)| {
                let image = &x[i * cin * plane..(i + 1) * cin * plane];
                let rows = rows_per_piece.min(tiles_y - first);
                for r in 0..rows {
                    transform_input::<T>(image, (cin, wide, plane), first + r, v, (tiles, r * tiles_x), (e, phases));
                }
                for xi in 0..positions {
                    // SAFETY: p[ξ] is [cout, tiles] (row stride tiles), u[ξ]
                    // [cout, cin] (row stride cin), v[ξ] [cin, tiles] (row
                    // stride tiles), all inside their buffers.
                    unsafe {
                        product(
                            (cout, rows * tiles_x, cin),
                            Strided::rows(p.as_mut_ptr().add(xi * cout * tiles), tiles),
                            false,
                            Strided::rows(u.as_ptr().add(xi * cout * cin), cin),
                            Strided::rows(v.as_ptr().add(xi * cin * tiles), tiles),
                        );
                    }
                }
                for r in 0..rows {
                    let ty = first + r;
                    let inside = m.min(h - m * ty);
                    for (o, &b) in bias.iter().enumerate() {
                        transform_output::<T>(p, (o, cout), (tiles, r * tiles_x), b, (block_rows, columns, out_phases));
                        let at = (i * cout + o) * h * w + m * ty * w;
                        for (q, row) in block_rows.chunks_exact(m * tiles_x).take(inside).enumerate() {
                            // SAFETY: image i, channel o, output row m·ty + q
                            // (inside the image), w values: only this piece
                            // writes it.
                            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), shared.at(at + q * w), w) };
                        }
                    }
                }
            },
        );
        Ok((candle_core::CpuStorage::F32(out), (n, cout, h, w).into()))
    }
}

/// U[ξ][o][c] = (G g Gᵀ)[ξ] for every kernel g = weight[o, c]: [A², cout, cin].
/// Each output channel's [A², cin] is made in a local buffer and copied out
/// a row of cin at a time (writing every ξ of one kernel at once, A² places
/// cout·cin apart, ran at a tenth of the speed), output channels in
/// parallel.
fn transformed_weight<T: Tiling>(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let a = T::A;
    let mut u = zeroed(a * a * cout * cin);
    let shared = SharedOut(u.as_mut_ptr());
    weight.par_chunks_exact(9 * cin).enumerate().for_each_init(
        || vec![0f32; a * a * cin],
        |local, (o, kernels)| {
            for (c, g) in kernels.chunks_exact(9).enumerate() {
                // G g: [A, 3], then (G g) Gᵀ: [A, A].
                let mut gg = [0f32; 8 * 3];
                for (k, value) in gg.iter_mut().take(a * 3).enumerate() {
                    let (r, col) = (k / 3, k % 3);
                    *value = T::G[r * 3] * g[col] + T::G[r * 3 + 1] * g[3 + col] + T::G[r * 3 + 2] * g[6 + col];
                }
                for xi in 0..a * a {
                    let (r, col) = (xi / a, xi % a);
                    local[xi * cin + c] = gg[r * 3] * T::G[col * 3]
                        + gg[r * 3 + 1] * T::G[col * 3 + 1]
                        + gg[r * 3 + 2] * T::G[col * 3 + 2];
                }
            }
            for (xi, row) in local.chunks_exact(cin).enumerate() {
                // SAFETY: [ξ][o][..cin] is inside u, and only this task
                // writes output channel o's rows.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), shared.at((xi * cout + o) * cin), cin) };
            }
        },
    );
    u
}

/// V[ξ][c][offset + t] = (Bᵀ d B)[ξ] for every channel c and tile t of the
/// row of tiles `ty`, d the padded input's A x A block at (M·ty, M·t); V's
/// rows are `tiles` long. Bᵀ d combines the block's rows, the same for
/// every tile, so it is done a whole padded row at a time (`e`, A rows of
/// `wide`); B then combines each tile's columns.
fn transform_input<T: Tiling>(
    image: &[f32],
    (cin, wide, plane): (usize, usize, usize),
    ty: usize,
    v: &mut [f32],
    (tiles, offset): (usize, usize),
    (e, phases): (&mut [f32], &mut [f32]),
) {
    let (m, a) = (T::M, T::A);
    let tiles_x = (wide - 2) / m;
    let stride = cin * tiles;
    for c in 0..cin {
        let start = c * plane + m * ty * wide;
        let block = &image[start..start + a * wide];
        for (r, e_row) in e.chunks_exact_mut(wide).enumerate() {
            let d = |j: usize| &block[j * wide..(j + 1) * wide];
            let mut terms = nonzero(T::BT, a, r);
            if let Some((j, coefficient)) = terms.next() {
                e_row.iter_mut().zip(d(j)).for_each(|(out, x)| *out = coefficient * x);
            }
            for (j, coefficient) in terms {
                e_row.iter_mut().zip(d(j)).for_each(|(out, x)| *out += coefficient * x);
            }
        }
        for (r, e_row) in e.chunks_exact(wide).enumerate() {
            // Tile t reads e_row[M·t + j], j < A: phase j of tile t for
            // j < M, phase j − M of tile t + 1 after; split into phases, each
            // combination is a pass over contiguous slices.
            let (body, tail) = e_row.split_at(m * tiles_x);
            for (k, phase) in phases.chunks_exact_mut(tiles_x + 1).enumerate() {
                for (out, tile) in phase.iter_mut().zip(body.chunks_exact(m)) {
                    *out = tile[k];
                }
                // The two columns past the last tile start phases 0 and 1
                // of a tile that does not exist: only tile t + 1 reads them.
                phase[tiles_x] = tail.get(k).copied().unwrap_or(0.0);
            }
            let phase = |j: usize| {
                let (k, skip) = if j < m { (j, 0) } else { (j - m, 1) };
                &phases[k * (tiles_x + 1) + skip..][..tiles_x]
            };
            for col in 0..a {
                let at = (r * a + col) * stride + c * tiles + offset;
                let dst = &mut v[at..at + tiles_x];
                let mut terms = nonzero(T::BT, a, col);
                if let Some((j, coefficient)) = terms.next() {
                    dst.iter_mut().zip(phase(j)).for_each(|(out, x)| *out = coefficient * x);
                }
                for (j, coefficient) in terms {
                    dst.iter_mut().zip(phase(j)).for_each(|(out, x)| *out += coefficient * x);
                }
            }
        }
    }
}

/// Output channel o's M rows of one row of tiles (M·tiles_x values each,
/// into `block_rows`), Aᵀ P A per tile plus the bias; the row's products
/// start at `offset` in P's rows of `tiles`. `columns` is scratch for Aᵀ P
/// [A, tiles_x] and `phases` for each output column of every tile [M, tiles_x].
fn transform_output<T: Tiling>(
    p: &[f32],
    (o, cout): (usize, usize),
    (tiles, offset): (usize, usize),
    bias: f32,
    (block_rows, columns, phases): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (m, a) = (T::M, T::A);
    let tiles_x = block_rows.len() / (m * m);
    let at = |xi: usize| &p[(xi * cout + o) * tiles + offset..][..tiles_x];
    for (q, row) in block_rows.chunks_exact_mut(m * tiles_x).enumerate() {
        // Row q of Aᵀ P, for each of the block's A columns and every tile.
        for (col, column) in columns.chunks_exact_mut(tiles_x).enumerate() {
            let mut terms = nonzero(T::AT, a, q);
            if let Some((j, coefficient)) = terms.next() {
                column.iter_mut().zip(at(j * a + col)).for_each(|(out, x)| *out = coefficient * x);
            }
            for (j, coefficient) in terms {
                column.iter_mut().zip(at(j * a + col)).for_each(|(out, x)| *out += coefficient * x);
            }
        }
        // Then A combines the columns: output column k of every tile ...
        for (k, phase) in phases.chunks_exact_mut(tiles_x).enumerate() {
            phase.fill(bias);
            for (col, coefficient) in nonzero(T::AT, a, k) {
                let column = &columns[col * tiles_x..(col + 1) * tiles_x];
                phase.iter_mut().zip(column).for_each(|(out, x)| *out += coefficient * x);
            }
        }
        // ... interleaved into the row.
        for (k, phase) in phases.chunks_exact(tiles_x).enumerate() {
            for (pixels, &value) in row.chunks_exact_mut(m).zip(phase) {
                pixels[k] = value;
            }
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

    fn worst_error<T: Tiling>(n: usize, cin: usize, cout: usize, h: usize, w: usize) -> f64 {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &d).unwrap();
        let weight = Tensor::randn(0f32, 1.0, (cout, cin, 3, 3), &d).unwrap();
        let bias = Tensor::randn(0f32, 1.0, cout, &d).unwrap();
        let u = Tensor::from_vec(
            transformed_weight::<T>(&weight.flatten_all().unwrap().to_vec1::<f32>().unwrap(), cout, cin),
            (T::A * T::A, cout, cin),
            &d,
        )
        .unwrap();
        let got: Vec<f32> = conv3x3_by::<T>(&x, &u, &bias).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = direct(&flat(&x), &flat(&weight), &flat(&bias), (n, cin, h, w));
        assert_eq!(got.len(), want.len());
        // Relative to the outputs' typical size, √(9·cin).
        let scale = (9.0 * cin as f64).sqrt();
        got.iter().zip(&want).map(|(g, e)| (f64::from(*g) - e).abs() / scale).fold(0.0, f64::max)
    }

    #[test]
    fn equals_the_direct_sum_on_odd_and_even_sizes() {
        // Sizes that are not multiples of the block leave part tiles at the
        // bottom and the right.
        for (n, cin, cout, h, w) in
            [(2, 5, 7, 6, 8), (1, 4, 3, 7, 9), (2, 3, 2, 1, 1), (1, 33, 40, 11, 10), (1, 64, 16, 13, 18)]
        {
            let f2 = worst_error::<F2>(n, cin, cout, h, w);
            assert!(f2 < 4e-6, "F2 {n}x{cin}->{cout} {h}x{w}: {f2}");
        }
    }
}
