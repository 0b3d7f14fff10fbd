//! The coarse parts' share of `first_conv`, streamed a coarse row at a time.
//!
//! For each coarse part g (channels-last, [ph·pw, c]) and each output row Y,
//! `first_conv` needs Σ over the row operator's entries (y, ky) of the
//! column pass applied to the taps' products of coarse row y
//! (`resample::column_operator`, `row_operator`). Made for the whole part
//! at once, those are two buffers of 58 and 38 MB per image at 224 (conv2_2),
//! written and read back from memory. Here each output row computes only the
//! coarse rows it reads that are not already in a small per-thread cache
//! (the rows an output row reads move forward with it), so the products and
//! column passes stay in cache. The arithmetic is the same, but for the
//! coarse rows that two threads' stretches of output rows share.

use super::buffers::{contiguous_f32, contiguous_f32_mut, SharedOut};
use super::product::{product, Strided};
use super::resample::SparseRows;
use candle_core::{CpuStorage, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

/// One coarse part: its taps' weights and its two operators.
pub struct CoarsePart<'a> {
    /// [c, (ky, kx, c1)]: every tap's weight for the part's channels.
    pub taps: Vec<f32>,
    /// Columns along X: rows (ky, X) of k·w, columns (x, ky, kx) of pw·k².
    pub columns: &'a SparseRows,
    /// Rows along Y: rows Y of h, columns (y, ky) of ph·k.
    pub rows: &'a SparseRows,
}

/// `into` [n, c1, h, w] += the two coarse parts' share of the first
/// convolution, from the parts channels-last ([n·ph·pw, c] each).
pub fn add_coarse_parts(into: &Tensor, parts: [(&CoarsePart<'_>, &Tensor); 2]) -> Result<()> {
    let op = CoarseRows { parts: [parts[0].0, parts[1].0] };
    into.inplace_op3(parts[0].1, parts[1].1, &op)
}

struct CoarseRows<'a> {
    parts: [&'a CoarsePart<'a>; 2],
}

/// The shape of one part as the op reads it.
#[derive(Clone, Copy)]
struct Geometry {
    /// Channels of the part.
    c: usize,
    /// Coarse pixels per coarse row, coarse rows per image.
    pw: usize,
    ph: usize,
    /// Floats in one coarse row's column pass: k rows (ky) of w·c1.
    by_row: usize,
}

impl InplaceOp3 for CoarseRows<'_> {
    fn name(&self) -> &'static str {
        "first-conv-coarse-rows"
    }

    fn cpu_fwd(
        &self,
        into: &mut CpuStorage,
        into_layout: &Layout,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<()> {
        let name = InplaceOp3::name(self);
        let (n, c1, h, w) = into_layout.shape().dims4()?;
        let inner = w * c1;
        let xs = [contiguous_f32(a, a_layout, name)?, contiguous_f32(b, b_layout, name)?];
        // Both parts' operators are made for the same kernel: k·w column rows.
        let k = self.parts[0].columns.rows() / w.max(1);
        let mut geometry = Vec::with_capacity(2);
        for ((x, layout), part) in xs.iter().zip([a_layout, b_layout]).zip(self.parts) {
            let (all_pixels, c) = layout.shape().dims2()?;
            let pixels = all_pixels / n.max(1);
            let pw = part.columns.cols() / (k * k).max(1);
            let fits = all_pixels == n * pixels
                && k % 2 == 1
                && part.columns.rows() == k * w
                && pw > 0
                && part.columns.cols() == pw * k * k
                && pixels.is_multiple_of(pw)
                && part.rows.rows() == h
                && part.rows.cols() == pixels / pw * k
                && part.taps.len() == c * k * k * c1
                && x.len() == n * pixels * c;
            if !fits {
                candle_core::bail!(
                    "{name}: a part [{pixels}, {c}] does not fit its operators or [{n}, {c1}, {h}, {w}]"
                );
            }
            geometry.push(Geometry { c, pw, ph: pixels / pw, by_row: k * inner });
        }
        // The coarse rows each output row reads, per part.
        let reads: Vec<Vec<Vec<usize>>> =
            self.parts.iter().map(|part| (0..h).map(|y_out| distinct_rows(part.rows, y_out, k)).collect()).collect();
        let out = contiguous_f32_mut(into, into_layout, name)?;
        let planes = SharedOut(out.as_mut_ptr());
        let plane = h * w;

        // Tasks are contiguous stretches of one image's output rows: a
        // whole image each when the batch keeps the threads busy, else a
        // few per image (at least 16 rows each), so that few coarse rows are
        // made twice.
        let threads = rayon::current_num_threads();
        let stretches = threads.div_ceil(n.max(1)).min(h.div_ceil(16)).max(1);
        let per = h.div_ceil(stretches);
        let tasks: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..stretches).map(move |s| (i, s))).collect();
        tasks.into_par_iter().for_each(|(i, s)| {
            let mut caches: Vec<RowCache> =
                reads.iter().zip(&geometry).map(|(r, g)| RowCache::new(r, g.by_row)).collect();
            let widest = geometry.iter().map(|g| g.pw * k * k * c1).max().unwrap_or(0);
            let mut products = vec![0f32; widest];
            let mut row = vec![0f32; inner];
            for y_out in s * per..((s + 1) * per).min(h) {
                row.fill(0.0);
                for ((((part, g), x), cache), reads) in
                    self.parts.iter().zip(&geometry).zip(&xs).zip(&mut caches).zip(&reads)
                {
                    let image = &x[i * g.ph * g.pw * g.c..(i + 1) * g.ph * g.pw * g.c];
                    cache.hold(&reads[y_out], |y, dst| coarse_row(part, *g, image, y, k, c1, &mut products, dst));
                    for &(j, weight) in part.rows.row(y_out) {
                        let (y, ky) = (j as usize / k, j as usize % k);
                        let src = &cache.get(y)[ky * inner..(ky + 1) * inner];
                        row.iter_mut().zip(src).for_each(|(d, s)| *d += weight * s);
                    }
                }
                for ch in 0..c1 {
                    // SAFETY: row y_out of image i's planes is this task's
                    // alone, and (i·c1 + ch)·plane + y_out·w + w <= n·c1·h·w.
                    let at = (i * c1 + ch) * plane + y_out * w;
                    let dst = unsafe { std::slice::from_raw_parts_mut(planes.at(at), w) };
                    for (d, pixel) in dst.iter_mut().zip(row.chunks_exact(c1)) {
                        *d += pixel[ch];
                    }
                }
            }
        });
        Ok(())
    }
}

/// Coarse row y's column pass, [(ky, X), c1], into `dst`: its pixels
/// times every tap's weight (one gemm, [pw, c] x [c, k²·c1]), then the
/// column operator over them.
#[allow(clippy::too_many_arguments)]
fn coarse_row(
    part: &CoarsePart<'_>,
    g: Geometry,
    x: &[f32],
    y: usize,
    k: usize,
    c1: usize,
    products: &mut [f32],
    dst: &mut [f32],
) {
    let n = k * k * c1;
    let pixels = &x[y * g.pw * g.c..(y + 1) * g.pw * g.c];
    debug_assert!(products.len() >= g.pw * n && part.taps.len() == g.c * n);
    // SAFETY: dst is products [pw, n] (row stride n); lhs is the coarse
    // row [pw, c] (row stride c); rhs is the taps [c, n] (row stride n):
    // all in bounds (above).
    unsafe {
        product(
            (g.pw, n, g.c),
            Strided::rows(products.as_mut_ptr(), n),
            false,
            Strided::rows(pixels.as_ptr(), g.c),
            Strided::rows(part.taps.as_ptr(), n),
        );
    }
    part.columns.apply_block(products, c1, dst);
}

/// The column passes of the few coarse rows an output row reads, kept
/// while the output rows move down.
struct RowCache {
    /// (coarse row, its column pass) per slot; `usize::MAX`: empty.
    slots: Vec<(usize, Vec<f32>)>,
}

impl RowCache {
    /// As many slots as the most coarse rows one output row reads.
    fn new(reads: &[Vec<usize>], by_row: usize) -> RowCache {
        let widest = reads.iter().map(Vec::len).max().unwrap_or(0).max(1);
        RowCache { slots: (0..widest).map(|_| (usize::MAX, vec![0f32; by_row])).collect() }
    }

    /// Makes every coarse row in `wanted` present, computing each missing
    /// one with `make` into a slot that holds no wanted row (there is one:
    /// the slots are as many as the most rows any output row wants).
    fn hold(&mut self, wanted: &[usize], mut make: impl FnMut(usize, &mut [f32])) {
        for &y in wanted {
            if self.slots.iter().any(|(held, _)| *held == y) {
                continue;
            }
            if let Some((held, data)) = self.slots.iter_mut().find(|(held, _)| !wanted.contains(held)) {
                make(y, data);
                *held = y;
            }
        }
    }

    /// A held row's column pass (empty if it is not held, which `hold` rules out).
    fn get(&self, y: usize) -> &[f32] {
        self.slots.iter().find(|(held, _)| *held == y).map_or(&[], |(_, data)| data)
    }
}

/// The coarse rows output row `y_out` reads (entries (y, ky) of the row operator).
fn distinct_rows(rows: &SparseRows, y_out: usize, k: usize) -> Vec<usize> {
    let mut ys: Vec<usize> = rows.row(y_out).iter().map(|&(j, _)| j as usize / k).collect();
    ys.sort_unstable();
    ys.dedup();
    ys
}

/// Coarse part g's share of `first_conv_weight_gradient` for one image,
/// [c, (ky, kx, c1)]: Σ over its coarse rows y of g[y]ᵀ · D[y], where D[y]
/// [pw, (ky, kx, c1)] is the output gradient taken down to coarse row y by
/// the transposed row pass, then the transposed column pass. Made a few
/// coarse rows at a time (the whole D is 58 MB at 224 for conv2_2), so it
/// stays in cache; `g` is the part channels-last [ph·pw, c], `dy` the
/// output gradient channels-last [h·w, c1].
pub fn coarse_weight_gradient(
    g: &Tensor,
    dy: &Tensor,
    columns_t: &SparseRows,
    rows_t: &SparseRows,
    k: usize,
) -> Result<Tensor> {
    g.apply_op2_no_bwd(dy, &CoarseWeightGradient { columns_t, rows_t, k })
}

struct CoarseWeightGradient<'a> {
    /// Rows (x, ky, kx) of pw·k², columns (ky, X) of k·w.
    columns_t: &'a SparseRows,
    /// Rows (y, ky) of ph·k, columns Y of h.
    rows_t: &'a SparseRows,
    k: usize,
}

/// Coarse pixels per gemm product of `CoarseWeightGradient`: a few coarse
/// rows, so that the product is long enough and D stays a few MB.
const GRADIENT_PIXELS: usize = 448;

impl candle_core::CustomOp2 for CoarseWeightGradient<'_> {
    fn name(&self) -> &'static str {
        "first-conv-coarse-weight-gradient"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        g_layout: &Layout,
        dy: &CpuStorage,
        dy_layout: &Layout,
    ) -> Result<(CpuStorage, candle_core::Shape)> {
        let name = candle_core::CustomOp2::name(self);
        let k = self.k;
        let (pixels, c) = g_layout.shape().dims2()?;
        let (out_pixels, c1) = dy_layout.shape().dims2()?;
        let (g, dy) = (contiguous_f32(g, g_layout, name)?, contiguous_f32(dy, dy_layout, name)?);
        let ph = self.rows_t.rows() / k.max(1);
        let pw = self.columns_t.rows() / (k * k).max(1);
        let h = self.rows_t.cols();
        let w = self.columns_t.cols() / k.max(1);
        let fits = k % 2 == 1
            && ph * k == self.rows_t.rows()
            && pw * k * k == self.columns_t.rows()
            && w * k == self.columns_t.cols()
            && pixels == ph * pw
            && out_pixels == h * w;
        if !fits {
            candle_core::bail!(
                "{name}: a part [{pixels}, {c}] and a gradient [{out_pixels}, {c1}] do not fit the operators"
            );
        }
        let inner = w * c1;
        let n = k * k * c1;
        let rows_per_piece = (GRADIENT_PIXELS / pw).clamp(1, ph);
        let pieces: Vec<usize> = (0..ph).step_by(rows_per_piece).collect();
        let out = super::buffers::fixed_order_sum(
            &pieces,
            c * n,
            || (vec![0f32; k * inner], vec![0f32; rows_per_piece * pw * n]),
            |&first, acc, (r, d)| {
                let rows = rows_per_piece.min(ph - first);
                for (b, d_row) in d.chunks_exact_mut(pw * n).take(rows).enumerate() {
                    let y = first + b;
                    // R [(ky, X), c1]: the output gradient's rows taken to (y, ky).
                    for (ky, r_row) in r.chunks_exact_mut(inner).enumerate() {
                        r_row.fill(0.0);
                        self.rows_t.add_row_product(y * k + ky, dy, inner, r_row);
                    }
                    // D[y] [(x, ky, kx), c1]: R taken along the columns.
                    self.columns_t.apply_block(r, c1, d_row);
                }
                let span = rows * pw;
                let lhs = &g[first * pw * c..(first * pw + span) * c];
                // SAFETY: dst is acc [c, n] (row stride n); lhs is the
                // coarse rows transposed, c x span (element (ch, p) at
                // p·c + ch); rhs is D [span, n] (row stride n): in bounds.
                unsafe {
                    product(
                        (c, n, span),
                        Strided::rows(acc.as_mut_ptr(), n),
                        true,
                        Strided::columns(lhs.as_ptr(), c),
                        Strided::rows(d.as_ptr(), n),
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), (c, n).into()))
    }
}
