//! Data augmentation: random crops (`train.random_crop`) and left-right mirror
//! images (`train.flip`). Both are pure functions of (seed, step), so a
//! resumed run sees what an uninterrupted one saw.

use colorize_core::Rng;

/// A `crop` x `crop` square of each of a batch's `n` images (y [n, s, s]
/// and uv [n, 2, s, s] bytes), at a random position per image: the same
/// window of all three planes. Returns the cropped (y, uv).
pub fn crop_each(y: &[u8], uv: &[u8], n: usize, s: usize, crop: usize, seed: u64, step: u64) -> (Vec<u8>, Vec<u8>) {
    // The config refuses a train.random_crop larger than data.size, and
    // tidy: the trainer refuses a cache of another side than data.size.
    assert!(crop <= s, "a {crop} px crop of {s} px pictures");
    let mut rng = Rng::derived(seed ^ 0xc209, step);
    let (mut y_out, mut uv_out) = (Vec::with_capacity(n * crop * crop), Vec::with_capacity(n * 2 * crop * crop));
    for image in 0..n {
        let positions = (s - crop + 1) as u64;
        let (top, left) = (rng.below(positions) as usize, rng.below(positions) as usize);
        let window = |plane: &[u8], dst: &mut Vec<u8>| {
            for row in plane.chunks_exact(s).skip(top).take(crop) {
                dst.extend_from_slice(&row[left..left + crop]);
            }
        };
        window(&y[image * s * s..(image + 1) * s * s], &mut y_out);
        for plane in uv[image * 2 * s * s..(image + 1) * 2 * s * s].chunks_exact(s * s) {
            window(plane, &mut uv_out);
        }
    }
    (y_out, uv_out)
}

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
    fn crops_are_windows_of_every_plane_at_positions_that_vary() {
        let (n, s, c) = (12, 10, 4);
        let y: Vec<u8> = (0..n * s * s).map(|i| (i * 7) as u8).collect();
        let uv: Vec<u8> = (0..n * 2 * s * s).map(|i| (i * 5 + 1) as u8).collect();
        let (yc, uvc) = crop_each(&y, &uv, n, s, c, 3, 9);
        assert_eq!((yc.len(), uvc.len()), (n * c * c, n * 2 * c * c));
        let mut corners = std::collections::BTreeSet::new();
        for image in 0..n {
            // Find the window by its top-left Y value (values are distinct
            // within a plane for these sizes), then check every pixel.
            let first = yc[image * c * c];
            let at = (0..s * s).find(|&i| y[image * s * s + i] == first).expect("the window's corner");
            let (top, left) = (at / s, at % s);
            assert!(top + c <= s && left + c <= s, "image {image}: window at ({top}, {left}) leaves the picture");
            corners.insert((top, left));
            for r in 0..c {
                for col in 0..c {
                    assert_eq!(yc[(image * c + r) * c + col], y[(image * s + top + r) * s + left + col]);
                    for p in 0..2 {
                        let src = uv[((image * 2 + p) * s + top + r) * s + left + col];
                        assert_eq!(uvc[((image * 2 + p) * c + r) * c + col], src, "image {image} plane {p}");
                    }
                }
            }
        }
        assert!(corners.len() > 3, "positions vary: {corners:?}");
        assert_eq!(crop_each(&y, &uv, n, s, c, 3, 9), (yc.clone(), uvc.clone()), "a pure function of (seed, step)");
        assert_ne!(crop_each(&y, &uv, n, s, c, 3, 10).0, yc, "another step, other windows");
        assert_eq!(crop_each(&y, &uv, n, s, s, 3, 9), (y, uv), "a full-size crop is the picture");
    }

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
