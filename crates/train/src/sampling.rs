//! Sampled-pixel training: which pixels of a batch the loss is taken at,
//! and their targets.

use colorize_core::Rng;
use colorize_model::hypercolumn::Pixel;

/// `per_image` pixels of each of `n` images of side `s`, uniform and
/// independent (with replacement), a pure function of (seed, step): a
/// resumed run draws the same pixels as an uninterrupted one.
pub fn sample_pixels(n: usize, s: usize, per_image: usize, seed: u64, step: u64) -> Vec<Pixel> {
    let mut rng = Rng::derived(seed ^ 0x05a3_d1e5, step);
    (0..n)
        .flat_map(|image| (0..per_image).map(move |_| image))
        .map(|image| {
            let k = rng.below((s * s) as u64) as usize;
            Pixel { image, row: k / s, col: k % s }
        })
        .collect()
}

/// The (U, V) bytes at the pixels, [pixels, 2] row-major, from a batch's
/// uv bytes [n, 2, s, s].
pub fn targets_at(uv: &[u8], s: usize, pixels: &[Pixel]) -> Vec<u8> {
    let area = s * s;
    pixels
        .iter()
        .flat_map(|p| {
            let at = p.row * s + p.col;
            let base = p.image * 2 * area;
            [uv[base + at], uv[base + area + at]]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_are_in_range_per_image_and_reproducible() {
        let pixels = sample_pixels(3, 8, 5, 1, 7);
        assert_eq!(pixels.len(), 15);
        for (i, p) in pixels.iter().enumerate() {
            assert_eq!(p.image, i / 5);
            assert!(p.row < 8 && p.col < 8);
        }
        assert_eq!(pixels, sample_pixels(3, 8, 5, 1, 7));
        assert_ne!(pixels, sample_pixels(3, 8, 5, 1, 8), "another step draws other pixels");
        // Over many draws every pixel of a 4x4 image turns up.
        let mut seen = [false; 16];
        for p in sample_pixels(1, 4, 400, 2, 0) {
            seen[p.row * 4 + p.col] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn targets_are_read_from_the_right_plane_and_place() {
        // Two 2x2 images; byte value = 100 * image + 10 * plane + position.
        let uv: Vec<u8> =
            (0..2).flat_map(|i| (0..2).flat_map(move |c| (0..4).map(move |k| (100 * i + 10 * c + k) as u8))).collect();
        let pixels = [Pixel { image: 1, row: 1, col: 0 }, Pixel { image: 0, row: 0, col: 1 }];
        let got = targets_at(&uv, 2, &pixels);
        assert_eq!(got, [102u8, 112, 1, 11]);
    }
}
