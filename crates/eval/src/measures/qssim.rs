//! Quaternion SSIM (A. Kolaman, O. Yadid-Pecht, "Quaternion Structural
//! Similarity: A New Quality Index for Color Images", IEEE TIP 21(4), 2012),
//! with the defaults of the authors' reference code (method.md):
//!
//! - both images / 256; each pixel the pure quaternion (R i + G j + B k) / √3;
//! - automatic downsampling by f = max(1, round(min(M, N) / 256)) (box filter);
//! - 11x11 Gaussian window, σ 1.5, 'valid'; C1 = 0.01², C2 = 0.03² (L = 1);
//! - map = ((2 μ1 μ2* + C1)(2 σ12* + C2)) / ((μ1 μ1* + μ2 μ2* + C1)(σ1² + σ2² + C2)*),
//!   QSSIM = mean over the map of |map|.
//!
//! For pure quaternions a, b: a b* = a·b − a×b. So with μ1, μ2 the windowed
//! means of the colour vectors:
//!
//! ```text
//! 2 μ1 μ2* + C1  = (2 μ1·μ2 + C1,  −2 μ1×μ2)
//! σ12 = E[q1 q2*] − μ1 μ2* = (E[v1·v2] − μ1·μ2,  −(E[v1×v2] − μ1×μ2)) = (s, w)
//! 2 σ12* + C2    = (2 s + C2,  −2 w)
//! σ1² = E[|v1|²] − |μ1|²   (real), likewise σ2²
//! ```
//!
//! The denominator is real, and |p q| = |p| |q| for quaternions, so
//! |map| = |2 μ1 μ2* + C1| · |2 σ12* + C2| / ((|μ1|² + |μ2|² + C1)(σ1² + σ2² + C2)).
//! The fast path filters the 12 statistics these need (v1, v2, |v1|², |v2|²,
//! v1·v2, v1×v2) with the separable window, a row at a time, and combines
//! them per pixel (`map_rows`).

use super::window::{box_source, downsample_factor, gaussian_1d, Plane, WINDOW};
use super::{check_same_size, MeasureError};
use image::RgbImage;
use std::cell::RefCell;

/// The stabilising constants (L = 1), shared with the training loss.
pub const C1: f64 = 0.01 * 0.01;
pub const C2: f64 = 0.03 * 0.03;

/// QSSIM of a prediction against its truth (symmetric in its arguments).
pub fn qssim(pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
    let mut sum = 0.0;
    let mut count = 0usize;
    map_rows(pred, truth, |row| {
        sum += row.iter().sum::<f64>();
        count += row.len();
    })?;
    Ok(sum / count as f64)
}

/// The map of |local QSSIM|, at the downsampled size less the window's border.
pub fn qssim_map(pred: &RgbImage, truth: &RgbImage) -> Result<Plane, MeasureError> {
    let mut data = Vec::new();
    let mut w = 0;
    map_rows(pred, truth, |row| {
        w = row.len();
        data.extend_from_slice(row);
    })?;
    Ok(Plane { w, h: data.len() / w.max(1), data })
}

/// The 12 windowed statistics, in this order in the buffers: μ1 (3), μ2 (3),
/// E|v1|², E|v2|², E[v1·v2], E[v1×v2] (3).
const STATISTICS: usize = 12;

/// The QSSIM map, one output row at a time, in one pass over the picture:
/// each input row's 12 products are filtered along the row into a ring of
/// the last 11 such rows, and each output row is the ring filtered down the
/// columns and combined per pixel. The working set is 11 rows, so it stays
/// in cache (a plane per statistic did not), and the symmetric window is
/// applied folded (5 sums and 6 products for its 11 taps).
fn map_rows(pred: &RgbImage, truth: &RgbImage, mut on_row: impl FnMut(&[f64])) -> Result<(), MeasureError> {
    check_same_size(pred, truth)?;
    let (mut v1, mut v2) = (ColourRows::new(pred)?, ColourRows::new(truth)?);
    let (w, h) = (v1.w, v1.h);
    let ow = w + 1 - WINDOW;
    let g = gaussian_1d();
    // One row of the two pictures' colour vectors, then the six products
    // per pixel (|v1|², |v2|², v1·v2, v1×v2): 12 lines of w.
    let mut lines = vec![0.0; STATISTICS * w];
    // The ring is reused between calls on a thread: at 224 px it is 226 KB,
    // which a fresh allocation maps and faults in page by page each time.
    let mut ring = RING.with(|r| std::mem::take(&mut *r.borrow_mut()));
    ring.resize(WINDOW * STATISTICS * ow, 0.0);
    let mut filtered = vec![0.0; STATISTICS * ow];
    let mut out = vec![0.0; ow];
    for y in 0..h {
        let (colours, products) = lines.split_at_mut(6 * w);
        let (a, b) = colours.split_at_mut(3 * w);
        v1.row(y, a);
        v2.row(y, b);
        let (a, b) = (split3(a, w), split3(b, w));
        let (n1, rest) = products.split_at_mut(w);
        let (n2, rest) = rest.split_at_mut(w);
        let (d, rest) = rest.split_at_mut(w);
        let (c0, rest) = rest.split_at_mut(w);
        let (c1, c2) = rest.split_at_mut(w);
        for x in 0..w {
            let (p, r) = ([a[0][x], a[1][x], a[2][x]], [b[0][x], b[1][x], b[2][x]]);
            n1[x] = dot(p, p);
            n2[x] = dot(r, r);
            d[x] = dot(p, r);
            [c0[x], c1[x], c2[x]] = cross(p, r);
        }
        let slot = &mut ring[(y % WINDOW) * STATISTICS * ow..][..STATISTICS * ow];
        for (line, dst) in lines.chunks_exact(w).zip(slot.chunks_exact_mut(ow)) {
            filter_row(line, &g, dst);
        }
        if y + 1 < WINDOW {
            continue;
        }
        // Output row y − 10: the ring's rows in window order.
        let first = y + 1 - WINDOW;
        let rows: [&[f64]; WINDOW] =
            std::array::from_fn(|k| &ring[((first + k) % WINDOW) * STATISTICS * ow..][..STATISTICS * ow]);
        filter_columns(&rows, &g, &mut filtered);
        combine(&filtered, ow, &mut out);
        on_row(&out);
    }
    RING.with(|r| *r.borrow_mut() = ring);
    Ok(())
}

thread_local! {
    static RING: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

fn split3(line: &[f64], w: usize) -> [&[f64]; 3] {
    let (first, rest) = line.split_at(w);
    let (second, third) = rest.split_at(w);
    [first, second, third]
}

/// dst[x] = Σ_k g[k] line[x + k], folded: g[k] = g[10 − k]. All taps of
/// one output at once (one store per output; the compiler vectorises
/// across x).
fn filter_row(line: &[f64], g: &[f64; WINDOW], dst: &mut [f64]) {
    for (o, taps) in dst.iter_mut().zip(line.windows(WINDOW)) {
        *o = g[5] * taps[5]
            + g[0] * (taps[0] + taps[10])
            + g[1] * (taps[1] + taps[9])
            + g[2] * (taps[2] + taps[8])
            + g[3] * (taps[3] + taps[7])
            + g[4] * (taps[4] + taps[6]);
    }
}

/// dst = Σ_k g[k] rows[k], folded, over whole rows of the 12 statistics.
fn filter_columns(rows: &[&[f64]; WINDOW], g: &[f64; WINDOW], dst: &mut [f64]) {
    let n = dst.len();
    let r: [&[f64]; WINDOW] = rows.map(|row| &row[..n]);
    for i in 0..n {
        dst[i] = g[5] * r[5][i]
            + g[0] * (r[0][i] + r[10][i])
            + g[1] * (r[1][i] + r[9][i])
            + g[2] * (r[2][i] + r[8][i])
            + g[3] * (r[3][i] + r[7][i])
            + g[4] * (r[4][i] + r[6][i]);
    }
}

/// |map| per pixel from the windowed statistics (see the module's formula).
fn combine(stats: &[f64], ow: usize, out: &mut [f64]) {
    // Fixed-length slices: no bounds checks, so the loop vectorises.
    let s: [&[f64]; STATISTICS] = std::array::from_fn(|k| &stats[k * ow..][..ow]);
    let out = &mut out[..ow];
    for (i, o) in out.iter_mut().enumerate() {
        let m1 = [s[0][i], s[1][i], s[2][i]];
        let m2 = [s[3][i], s[4][i], s[5][i]];
        let mu_cross = cross(m1, m2);
        let a_norm = ((2.0 * dot(m1, m2) + C1).powi(2) + 4.0 * dot(mu_cross, mu_cross)).sqrt();
        let sigma12 = s[8][i] - dot(m1, m2);
        let w = [0, 1, 2].map(|k| s[9 + k][i] - mu_cross[k]);
        let b_norm = ((2.0 * sigma12 + C2).powi(2) + 4.0 * dot(w, w)).sqrt();
        let var1 = s[6][i] - dot(m1, m1);
        let var2 = s[7][i] - dot(m2, m2);
        let denominator = (dot(m1, m1) + dot(m2, m2) + C1) * (var1 + var2 + C2);
        *o = a_norm * b_norm / denominator;
    }
}

/// The R, G, B planes of the pure quaternions (channel / 256 / √3),
/// downsampled by the reference code's box filter (`box_downsample`'s
/// definition, summed in integers straight from the bytes), a row at a time.
struct ColourRows<'a> {
    raw: &'a [u8],
    /// The picture's width and the downsampling factor.
    source_w: usize,
    source_h: usize,
    f: usize,
    /// The downsampled size.
    w: usize,
    h: usize,
    scale: f64,
    /// The source columns each output column sums (mirrored at the edges).
    columns: Vec<usize>,
    sums: Vec<u32>,
}

impl<'a> ColourRows<'a> {
    fn new(image: &'a RgbImage) -> Result<ColourRows<'a>, MeasureError> {
        let (source_w, source_h) = (image.width() as usize, image.height() as usize);
        let f = downsample_factor(source_w, source_h);
        let (w, h) = (source_w.div_ceil(f), source_h.div_ceil(f));
        if w < WINDOW || h < WINDOW {
            return Err(MeasureError::TooSmall { w: image.width(), h: image.height(), scaled_w: w, scaled_h: h });
        }
        let columns = (0..w).flat_map(|ox| (0..f).map(move |dx| box_source(ox, dx, f, source_w))).collect();
        let scale = 1.0 / (256.0 * 3f64.sqrt()) / (f * f) as f64;
        Ok(ColourRows { raw: image.as_raw(), source_w, source_h, f, w, h, scale, columns, sums: vec![0; 3 * w] })
    }

    /// Row `y` of the three planes into `out` (3 lines of w).
    fn row(&mut self, y: usize, out: &mut [f64]) {
        let (w, sw, f, scale) = (self.w, self.source_w, self.f, self.scale);
        let (r, rest) = out.split_at_mut(w);
        let (g, b) = rest.split_at_mut(w);
        if f == 1 {
            let line = &self.raw[y * 3 * sw..][..3 * sw];
            for (((px, r), g), b) in line.chunks_exact(3).zip(r).zip(g).zip(b) {
                [*r, *g, *b] = [0, 1, 2].map(|c| f64::from(px[c]) * scale);
            }
            return;
        }
        self.sums.fill(0);
        for dy in 0..f {
            let line = &self.raw[box_source(y, dy, f, self.source_h) * 3 * sw..][..3 * sw];
            for (sum, sources) in self.sums.chunks_exact_mut(3).zip(self.columns.chunks_exact(f)) {
                for &sx in sources {
                    for c in 0..3 {
                        sum[c] += u32::from(line[3 * sx + c]);
                    }
                }
            }
        }
        for (((sum, r), g), b) in self.sums.chunks_exact(3).zip(r).zip(g).zip(b) {
            [*r, *g, *b] = [0, 1, 2].map(|c| f64::from(sum[c]) * scale);
        }
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
