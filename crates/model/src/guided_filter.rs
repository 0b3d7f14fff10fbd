//! Edge-aware chroma at full resolution: the guided filter of He, Sun and
//! Tang ("Guided Image Filtering", ECCV 2010), guided by the picture's own
//! full-resolution gray.
//!
//! The head predicts chroma at the model's side and the prediction is
//! blurred (`smoothing`), so once scaled to the picture's size a colour
//! fades across an object's edge over tens of pixels where the truth
//! changes at the edge. QSSIM's structure term charges for such a ramp: it
//! adds a chroma deviation to windows whose truth has none. In every window
//! the guided filter fits the chroma as a linear function of the gray,
//! a·Y + b, and averages the fits: where the gray has an edge, the chroma's
//! change moves onto it; where the gray is flat (variance well below ε),
//! a ≈ 0 and the chroma is only averaged.
//!
//! Windows are clipped at the picture's border (each mean is over the
//! pixels inside), so a uniform chroma stays uniform up to the edge.

/// ε, the regulariser of the per-window fit, for a gray in 0..1: gray
/// variations much smaller than √ε (about 8 levels of 255) are treated as
/// flat. Measured on BSDS500 val (radius 16 px, the committed head): ε
/// 0.001 and 0.01 gave the same QSSIM and colourfulness.
pub const GUIDE_EPS: f32 = 1e-3;

/// The guide's windowed statistics, shared by the planes it filters.
pub struct GuidedFilter<'a> {
    guide: &'a [f32],
    width: usize,
    height: usize,
    radius: usize,
    mean: Vec<f32>,
    /// var + ε, the fit's denominator.
    regularised_variance: Vec<f32>,
}

impl<'a> GuidedFilter<'a> {
    /// A filter with windows of (2·radius + 1)² pixels, guided by `guide`
    /// (row-major, `width` x `height`, values in 0..1).
    ///
    /// # Panics
    /// When `guide` does not hold width·height values (a programming error).
    pub fn new(guide: &'a [f32], width: usize, height: usize, radius: usize) -> GuidedFilter<'a> {
        // tidy: the caller sizes the guide from the picture it filters.
        assert_eq!(guide.len(), width * height, "the guide must hold width x height values");
        let mean = box_mean(guide, width, height, radius);
        let squares: Vec<f32> = guide.iter().map(|g| g * g).collect();
        let regularised_variance = box_mean(&squares, width, height, radius)
            .iter()
            .zip(&mean)
            .map(|(m2, m)| (m2 - m * m).max(0.0) + GUIDE_EPS)
            .collect();
        GuidedFilter { guide, width, height, radius, mean, regularised_variance }
    }

    /// `plane` (same size as the guide, any units) filtered: at each pixel
    /// mean(a)·guide + mean(b), a and b each window's least-squares fit of
    /// the plane to the guide.
    ///
    /// # Panics
    /// When `plane` is not the guide's size (a programming error).
    pub fn apply(&self, plane: &[f32]) -> Vec<f32> {
        // tidy: the caller filters planes of the guide's picture.
        assert_eq!(plane.len(), self.guide.len(), "the plane must be the guide's size");
        let (w, h, r) = (self.width, self.height, self.radius);
        // One plane at a time, so a large picture holds few of them at once.
        let (a, mut b) = self.fit(plane);
        let mean_a = box_mean(&a, w, h, r);
        drop(a);
        let mean_b = box_mean(&b, w, h, r);
        for (k, out) in b.iter_mut().enumerate() {
            *out = mean_a[k] * self.guide[k] + mean_b[k];
        }
        b
    }

    /// Each window's line, plane ≈ a·guide + b, by least squares.
    fn fit(&self, plane: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (w, h, r) = (self.width, self.height, self.radius);
        let mean_p = box_mean(plane, w, h, r);
        let products: Vec<f32> = plane.iter().zip(self.guide).map(|(p, g)| p * g).collect();
        let mean_gp = box_mean(&products, w, h, r);
        drop(products);
        let a: Vec<f32> =
            (0..w * h).map(|k| (mean_gp[k] - self.mean[k] * mean_p[k]) / self.regularised_variance[k]).collect();
        let b = (0..w * h).map(|k| mean_p[k] - a[k] * self.mean[k]).collect();
        (a, b)
    }
}

/// The mean over each pixel's (2r + 1)² window, clipped to the picture: two
/// sliding sums (rows, then columns), accumulated in f64 so that adding and
/// removing thousands of values leaves no drift, so the cost does not grow
/// with r.
fn box_mean(values: &[f32], width: usize, height: usize, r: usize) -> Vec<f32> {
    let mut rows = vec![0.0f32; width * height];
    for (src, dst) in values.chunks_exact(width).zip(rows.chunks_exact_mut(width)) {
        sliding_mean(width, r, |i| f64::from(src[i]), |i, mean| dst[i] = mean as f32);
    }
    // The column pass slides whole rows at once: `sums` is each column's
    // sum over the current window of rows.
    let mut out = vec![0.0f32; width * height];
    let mut sums = vec![0.0f64; width];
    let (mut lo, mut hi) = (0, 0);
    for y in 0..height {
        let (want_lo, want_hi) = (y.saturating_sub(r), (y + r + 1).min(height));
        while hi < want_hi {
            sums.iter_mut().zip(&rows[hi * width..][..width]).for_each(|(s, &v)| *s += f64::from(v));
            hi += 1;
        }
        while lo < want_lo {
            sums.iter_mut().zip(&rows[lo * width..][..width]).for_each(|(s, &v)| *s -= f64::from(v));
            lo += 1;
        }
        let count = (hi - lo) as f64;
        out[y * width..][..width].iter_mut().zip(&sums).for_each(|(o, s)| *o = (s / count) as f32);
    }
    out
}

/// The clipped window mean along one axis of `len` values, read with `get`
/// and written with `put`.
fn sliding_mean(len: usize, r: usize, get: impl Fn(usize) -> f64, mut put: impl FnMut(usize, f64)) {
    let (mut sum, mut lo, mut hi) = (0.0, 0, 0);
    for i in 0..len {
        let (want_lo, want_hi) = (i.saturating_sub(r), (i + r + 1).min(len));
        while hi < want_hi {
            sum += get(hi);
            hi += 1;
        }
        while lo < want_lo {
            sum -= get(lo);
            lo += 1;
        }
        put(i, sum / (hi - lo) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition in plain loops: each window's least-squares line of
    /// the plane against the guide (windows clipped), and at each pixel the
    /// mean of the lines of the windows that contain it, evaluated there.
    fn reference(guide: &[f32], plane: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
        let window = |k: usize| {
            let (x, y) = ((k % w) as i64, (k / w) as i64);
            let r = r as i64;
            let mut inside = Vec::new();
            for yy in (y - r).max(0)..=(y + r).min(h as i64 - 1) {
                for xx in (x - r).max(0)..=(x + r).min(w as i64 - 1) {
                    inside.push(yy as usize * w + xx as usize);
                }
            }
            inside
        };
        let fit = |k: usize| {
            let inside = window(k);
            let n = inside.len() as f64;
            let mean = |f: &dyn Fn(usize) -> f64| inside.iter().map(|&i| f(i)).sum::<f64>() / n;
            let (g, p) = (|i: usize| f64::from(guide[i]), |i: usize| f64::from(plane[i]));
            let (mg, mp) = (mean(&g), mean(&p));
            let variance = mean(&|i| (g(i) - mg).powi(2));
            let covariance = mean(&|i| (g(i) - mg) * (p(i) - mp));
            let a = covariance / (variance + f64::from(GUIDE_EPS));
            (a, mp - a * mg)
        };
        let fits: Vec<(f64, f64)> = (0..w * h).map(fit).collect();
        (0..w * h)
            .map(|k| {
                // A window of radius r contains k exactly when k's window contains its centre.
                let centres = window(k);
                let n = centres.len() as f64;
                let a = centres.iter().map(|&c| fits[c].0).sum::<f64>() / n;
                let b = centres.iter().map(|&c| fits[c].1).sum::<f64>() / n;
                (a * f64::from(guide[k]) + b) as f32
            })
            .collect()
    }

    fn pattern(n: usize, salt: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 + salt * 11) % 101) as f32 / 100.0).collect()
    }

    #[test]
    fn matches_the_plain_definition() {
        let (w, h) = (13, 9);
        let guide = pattern(w * h, 1);
        let plane: Vec<f32> = pattern(w * h, 2).iter().map(|v| 40.0 * v - 20.0).collect();
        for r in [1, 2, 5, 20] {
            let got = GuidedFilter::new(&guide, w, h, r).apply(&plane);
            let want = reference(&guide, &plane, w, h, r);
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-3, "radius {r}, pixel {k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn moves_a_chroma_ramp_onto_the_gray_edge() {
        // A gray step at column 10; the chroma a blurred ramp across it.
        let (w, h) = (20, 6);
        let guide: Vec<f32> = (0..w * h).map(|k| if k % w < 10 { 0.2 } else { 0.8 }).collect();
        let ramp: Vec<f32> = (0..w * h).map(|k| (k % w) as f32).collect();
        let out = GuidedFilter::new(&guide, w, h, 4).apply(&ramp);
        let row = &out[2 * w..][..w];
        let jump = row[10] - row[9];
        assert!(jump > 4.0, "the change should gather at the edge (the ramp's step is 1): {row:?}");
        for side in [&row[6..10], &row[10..14]] {
            let spread = side.iter().cloned().fold(f32::MIN, f32::max) - side.iter().cloned().fold(f32::MAX, f32::min);
            assert!(spread < 3.0, "each side of the edge should flatten (the ramp spans 3 there): {row:?}");
        }
    }

    #[test]
    fn keeps_a_uniform_chroma_and_a_flat_gray_only_averages() {
        let (w, h) = (11, 7);
        let guide = pattern(w * h, 3);
        let uniform = vec![-12.5f32; w * h];
        let out = GuidedFilter::new(&guide, w, h, 3).apply(&uniform);
        assert!(out.iter().all(|v| (v + 12.5).abs() < 1e-4), "borders included: {out:?}");
        // With a flat guide every fit has a = 0: the result is the box mean of the box mean.
        let flat = vec![0.5f32; w * h];
        let plane = pattern(w * h, 4);
        let out = GuidedFilter::new(&flat, w, h, 2).apply(&plane);
        let twice = box_mean(&box_mean(&plane, w, h, 2), w, h, 2);
        for (a, b) in out.iter().zip(&twice) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
