//! Data augmentation: mirror images left-right (`train.flip`).

use colorize_core::Rng;

/// Mirrors a random half of a batch's images (y [n, s, s] and uv [n, 2, s, s]
/// bytes) in place; which ones is a pure function of (seed, step), so a
/// resumed run sees what an uninterrupted one saw. Colour does not depend on
/// left and right, so a mirrored photograph is as good a training example.
pub fn flip_some(y: &mut [u8], uv: &mut [u8], n: usize, s: usize, seed: u64, step: u64) {
    let mut rng = Rng::derived(seed ^ 0xf11b, step);
    for image in 0..n {
        if rng.below(2) == 0 {
            continue;
        }
        let planes = y[image * s * s..(image + 1) * s * s]
            .chunks_exact_mut(s)
            .chain(uv[image * 2 * s * s..(image + 1) * 2 * s * s].chunks_exact_mut(s));
        for row in planes {
            row.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flipped_images_are_mirrored_in_every_plane_and_the_rest_untouched() {
        let (n, s) = (16, 4);
        let y0: Vec<u8> = (0..n * s * s).map(|i| i as u8).collect();
        let uv0: Vec<u8> = (0..n * 2 * s * s).map(|i| (i * 3) as u8).collect();
        let (mut y, mut uv) = (y0.clone(), uv0.clone());
        flip_some(&mut y, &mut uv, n, s, 1, 5);
        let mut flipped = 0;
        for image in 0..n {
            let mirrored =
                (0..s).all(|r| (0..s).all(|c| y[(image * s + r) * s + c] == y0[(image * s + r) * s + s - 1 - c]));
            let same = y[image * s * s..(image + 1) * s * s] == y0[image * s * s..(image + 1) * s * s];
            assert!(mirrored != same, "image {image} is either mirrored or untouched");
            for p in 0..2 {
                for r in 0..s {
                    for c in 0..s {
                        let at = ((image * 2 + p) * s + r) * s + c;
                        let from = ((image * 2 + p) * s + r) * s + if mirrored { s - 1 - c } else { c };
                        assert_eq!(uv[at], uv0[from]);
                    }
                }
            }
            flipped += usize::from(mirrored);
        }
        assert!((3..=13).contains(&flipped), "{flipped} of {n} flipped");
        let (mut y2, mut uv2) = (y0.clone(), uv0.clone());
        flip_some(&mut y2, &mut uv2, n, s, 1, 5);
        assert_eq!((y2, uv2), (y, uv), "a pure function of (seed, step)");
    }
}
