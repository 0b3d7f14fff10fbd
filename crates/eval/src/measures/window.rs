//! The machinery SSIM and QSSIM share: planes of f64, the automatic
//! downsampling of the reference code, and the 11x11 Gaussian window.

/// A plane of values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub w: usize,
    pub h: usize,
    pub data: Vec<f64>,
}

impl Plane {
    pub fn from_fn(w: usize, h: usize, f: impl Fn(usize, usize) -> f64) -> Plane {
        let mut data = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                data.push(f(x, y));
            }
        }
        Plane { w, h, data }
    }

    pub fn at(&self, x: usize, y: usize) -> f64 {
        self.data[y * self.w + x]
    }

    pub fn mean(&self) -> f64 {
        self.data.iter().sum::<f64>() / self.data.len() as f64
    }
}

pub const WINDOW: usize = 11;
pub const SIGMA: f64 = 1.5;

/// The reference code's downsampling factor: f = max(1, round(min(M, N) / 256)).
pub fn downsample_factor(w: usize, h: usize) -> usize {
    ((w.min(h) as f64 / 256.0).round() as usize).max(1)
}

/// An f x f mean filter with symmetric border padding ('same' size; an even
/// kernel anchored as MATLAB's imfilter anchors it, centre at index
/// floor((f - 1) / 2)), then every f-th row and column from the first.
/// Only the kept pixels are filtered.
pub fn box_downsample(plane: &Plane, f: usize) -> Plane {
    if f == 1 {
        return plane.clone();
    }
    let (w, h) = (plane.w.div_ceil(f), plane.h.div_ceil(f));
    let norm = 1.0 / (f * f) as f64;
    Plane::from_fn(w, h, |x, y| {
        let mut sum = 0.0;
        for dy in 0..f {
            let sy = box_source(y, dy, f, plane.h);
            for dx in 0..f {
                sum += plane.at(box_source(x, dx, f, plane.w), sy);
            }
        }
        sum * norm
    })
}

/// The source index of tap `d` (0..f) of output `o` along an axis of
/// length `n`: o·f + d − floor((f − 1) / 2), mirrored 'symmetric'ally at the
/// edges (−1 → 0, −2 → 1, n → n − 1).
pub fn box_source(o: usize, d: usize, f: usize, n: usize) -> usize {
    let i = (o * f + d) as isize - (f as isize - 1) / 2;
    let n = n as isize;
    let i = if i < 0 { -i - 1 } else { i };
    let i = if i >= n { 2 * n - i - 1 } else { i };
    i.clamp(0, n - 1) as usize
}

/// The normalised 1-D Gaussian; the 2-D window is its outer product (which
/// is the normalised 2-D Gaussian, as the exponent separates).
pub fn gaussian_1d() -> [f64; WINDOW] {
    let mut g = [0.0; WINDOW];
    let centre = (WINDOW / 2) as f64;
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - centre;
        *v = (-(d * d) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let sum: f64 = g.iter().sum();
    g.map(|v| v / sum)
}

/// The windowed mean over every full 11x11 window ('valid'): the result is
/// (w - 10) x (h - 10). Separable: rows, then columns.
pub fn filter_valid(plane: &Plane, g: &[f64; WINDOW]) -> Plane {
    let (ow, oh) = (plane.w + 1 - WINDOW, plane.h + 1 - WINDOW);
    // Both passes accumulate tap by tap over a whole row, which the
    // compiler vectorises (a dot product per output pixel does not).
    let mut rows = vec![0.0; ow * plane.h];
    for y in 0..plane.h {
        let line = &plane.data[y * plane.w..(y + 1) * plane.w];
        let out = &mut rows[y * ow..(y + 1) * ow];
        for (k, gk) in g.iter().enumerate() {
            for (o, s) in out.iter_mut().zip(&line[k..k + ow]) {
                *o += gk * s;
            }
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for (k, gk) in g.iter().enumerate() {
            let src = &rows[(y + k) * ow..(y + k + 1) * ow];
            for (o, s) in out[y * ow..(y + 1) * ow].iter_mut().zip(src) {
                *o += gk * s;
            }
        }
    }
    Plane { w: ow, h: oh, data: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_follows_the_reference_rounding() {
        assert_eq!(downsample_factor(224, 224), 1);
        assert_eq!(downsample_factor(520, 300), 1); // 300/256 = 1.17
        assert_eq!(downsample_factor(2000, 1500), 6); // 5.86
        assert_eq!(downsample_factor(640, 384), 2); // 1.5 rounds away from zero
    }

    #[test]
    fn box_downsample_by_two_averages_forward_pairs_and_mirrors_the_edge() {
        // 5 wide, 1 high... use 5x2 so rows mirror too.
        let p = Plane { w: 5, h: 2, data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0, 13.0, 14.0] };
        let d = box_downsample(&p, 2);
        assert_eq!((d.w, d.h), (3, 1));
        // Kept pixel (0,0) averages rows 0..2 and columns 0..2.
        assert_eq!(d.at(0, 0), (0.0 + 1.0 + 10.0 + 11.0) / 4.0);
        // Column 4 pairs with its mirror, column 4 again.
        assert_eq!(d.at(2, 0), (4.0 + 4.0 + 14.0 + 14.0) / 4.0);
    }

    #[test]
    fn box_downsample_by_three_is_centred() {
        let p = Plane::from_fn(6, 3, |x, _| x as f64);
        let d = box_downsample(&p, 3);
        // Kept column 0 averages columns -1 (mirror: 0), 0, 1.
        assert_eq!(d.at(0, 0), (0.0 + 0.0 + 1.0) / 3.0);
        assert_eq!(d.at(1, 0), (2.0 + 3.0 + 4.0) / 3.0);
    }

    #[test]
    fn gaussian_window_sums_to_one_and_filters_valid() {
        let g = gaussian_1d();
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((g[5] - 0.266_011_724_211_5).abs() < 1e-9, "centre tap {}", g[5]);
        let p = Plane::from_fn(14, 12, |x, y| (x + 3 * y) as f64);
        let f = filter_valid(&p, &g);
        assert_eq!((f.w, f.h), (4, 2));
        // A linear ramp is its own windowed mean at the window's centre.
        assert!((f.at(0, 0) - (5.0 + 15.0)).abs() < 1e-12);
    }
}
