//! The measures against independent references: plain loops written here,
//! hand-computed values, and the sanity values of method.md.

// The references are deliberately plain index loops, written as the
// definitions read (and MATLAB's floor((f + 1) / 2) as it is written).
#![allow(clippy::needless_range_loop, clippy::manual_div_ceil)]

use colorize_core::{yuv, Rng};
use colorize_eval::measures::{auc, colorfulness, psnr, qssim, ssim};
use colorize_eval::MeasureError;
use image::{Rgb, RgbImage};
use std::path::Path;

fn random_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    // Smooth-ish content plus noise, so windows see structure.
    let phase = rng.unit_f64() * 6.0;
    RgbImage::from_fn(w, h, |x, y| {
        let base = [0.0, 2.0, 4.0].map(|p: f64| 128.0 + 90.0 * ((x as f64 * 0.07 + y as f64 * 0.05) + p + phase).sin());
        Rgb(base.map(|b| (b + rng.unit_f64() * 40.0 - 20.0).clamp(0.0, 255.0) as u8))
    })
}

fn noisy_copy(image: &RgbImage, amount: f64, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        Rgb(image.get_pixel(x, y).0.map(|v| (f64::from(v) + (rng.unit_f64() - 0.5) * amount).clamp(0.0, 255.0) as u8))
    })
}

// ---------------------------------------------------------------------------
// A plain QSSIM: quaternion arithmetic written out, a 2-D window, no shortcuts.

#[derive(Clone, Copy, Debug)]
struct Q {
    w: f64,
    x: f64,
    y: f64,
    z: f64,
}

impl Q {
    const ZERO: Q = Q { w: 0.0, x: 0.0, y: 0.0, z: 0.0 };
    fn real(w: f64) -> Q {
        Q { w, ..Q::ZERO }
    }
    fn mul(self, o: Q) -> Q {
        Q {
            w: self.w * o.w - self.x * o.x - self.y * o.y - self.z * o.z,
            x: self.w * o.x + self.x * o.w + self.y * o.z - self.z * o.y,
            y: self.w * o.y - self.x * o.z + self.y * o.w + self.z * o.x,
            z: self.w * o.z + self.x * o.y - self.y * o.x + self.z * o.w,
        }
    }
    fn conj(self) -> Q {
        Q { w: self.w, x: -self.x, y: -self.y, z: -self.z }
    }
    fn add(self, o: Q) -> Q {
        Q { w: self.w + o.w, x: self.x + o.x, y: self.y + o.y, z: self.z + o.z }
    }
    fn sub(self, o: Q) -> Q {
        self.add(o.scale(-1.0))
    }
    fn scale(self, s: f64) -> Q {
        Q { w: self.w * s, x: self.x * s, y: self.y * s, z: self.z * s }
    }
    fn norm(self) -> f64 {
        (self.w * self.w + self.x * self.x + self.y * self.y + self.z * self.z).sqrt()
    }
    fn inverse(self) -> Q {
        let n2 = self.norm().powi(2);
        self.conj().scale(1.0 / n2)
    }
}

/// MATLAB: imfilter(img, ones(f)/f², 'symmetric', 'same'), then img(1:f:end, 1:f:end).
fn reference_downsample(plane: &[Vec<f64>], f: usize) -> Vec<Vec<f64>> {
    let (h, w) = (plane.len() as isize, plane[0].len() as isize);
    let sym = |i: isize, n: isize| -> usize {
        let mut i = i;
        if i < 0 {
            i = -1 - i;
        }
        if i >= n {
            i = 2 * n - 1 - i;
        }
        i as usize
    };
    let centre = ((f + 1) / 2) as isize; // imfilter's 1-based centre, floor((f+1)/2)
    let mut out = Vec::new();
    let mut y = 0;
    while y < h {
        let mut row = Vec::new();
        let mut x = 0;
        while x < w {
            let mut s = 0.0;
            for ky in 1..=f as isize {
                for kx in 1..=f as isize {
                    s += plane[sym(y + ky - centre, h)][sym(x + kx - centre, w)];
                }
            }
            row.push(s / (f * f) as f64);
            x += f as isize;
        }
        out.push(row);
        y += f as isize;
    }
    out
}

fn reference_qssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = (a.width() as usize, a.height() as usize);
    let f = ((w.min(h) as f64 / 256.0).round() as usize).max(1);
    let planes = |img: &RgbImage| -> Vec<Vec<Vec<f64>>> {
        (0..3)
            .map(|c| {
                let p: Vec<Vec<f64>> = (0..h)
                    .map(|y| (0..w).map(|x| f64::from(img.get_pixel(x as u32, y as u32).0[c]) / 256.0).collect())
                    .collect();
                if f > 1 {
                    reference_downsample(&p, f)
                } else {
                    p
                }
            })
            .collect()
    };
    let (pa, pb) = (planes(a), planes(b));
    let (h, w) = (pa[0].len(), pa[0][0].len());
    let s3 = 3f64.sqrt();
    let quat = |p: &Vec<Vec<Vec<f64>>>, y: usize, x: usize| Q {
        w: 0.0,
        x: p[0][y][x] / s3,
        y: p[1][y][x] / s3,
        z: p[2][y][x] / s3,
    };
    // fspecial('gaussian', 11, 1.5)
    let mut win = [[0.0; 11]; 11];
    let mut total = 0.0;
    for (i, row) in win.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let (di, dj) = (i as f64 - 5.0, j as f64 - 5.0);
            *v = (-(di * di + dj * dj) / (2.0 * 1.5 * 1.5)).exp();
            total += *v;
        }
    }
    let (c1, c2) = (Q::real(0.0001), Q::real(0.0009));
    let mut sum = 0.0;
    for y in 0..h - 10 {
        for x in 0..w - 10 {
            let (mut mu1, mut mu2, mut e11, mut e22, mut e12) = (Q::ZERO, Q::ZERO, Q::ZERO, Q::ZERO, Q::ZERO);
            for i in 0..11 {
                for j in 0..11 {
                    let g = win[i][j] / total;
                    let (q1, q2) = (quat(&pa, y + i, x + j), quat(&pb, y + i, x + j));
                    mu1 = mu1.add(q1.scale(g));
                    mu2 = mu2.add(q2.scale(g));
                    e11 = e11.add(q1.mul(q1.conj()).scale(g));
                    e22 = e22.add(q2.mul(q2.conj()).scale(g));
                    e12 = e12.add(q1.mul(q2.conj()).scale(g));
                }
            }
            let s1 = e11.sub(mu1.mul(mu1.conj()));
            let s2 = e22.sub(mu2.mul(mu2.conj()));
            let s12 = e12.sub(mu1.mul(mu2.conj()));
            let num = mu1.mul(mu2.conj()).scale(2.0).add(c1).mul(s12.conj().scale(2.0).add(c2));
            let den = mu1.mul(mu1.conj()).add(mu2.mul(mu2.conj())).add(c1).mul(s1.add(s2).add(c2).conj());
            sum += num.mul(den.inverse()).norm();
        }
    }
    sum / ((h - 10) * (w - 10)) as f64
}

#[test]
fn qssim_agrees_with_a_plain_quaternion_implementation() {
    // 64x48 and 300x520: no downsampling; 640x400 (f = 2) and 800x790 (f = 3) downsample.
    for (w, h, seed) in [(64, 48, 1), (300, 520, 2), (640, 400, 3), (800, 790, 4)] {
        let a = random_image(w, h, seed);
        let b = noisy_copy(&random_image(w, h, seed), 80.0, seed + 10);
        let fast = qssim(&a, &b).unwrap();
        let plain = reference_qssim(&a, &b);
        assert!((fast - plain).abs() < 1e-9, "{w}x{h}: fast {fast} plain {plain}");
        assert!(fast < 0.999 && fast > 0.1, "{w}x{h}: {fast} should be a real score");
    }
}

#[test]
fn qssim_of_identical_images_is_exactly_one_and_it_is_symmetric() {
    let a = random_image(70, 50, 5);
    assert_eq!(qssim(&a, &a).unwrap(), 1.0);
    let big = random_image(600, 520, 6);
    assert_eq!(qssim(&big, &big).unwrap(), 1.0);
    let b = noisy_copy(&a, 60.0, 7);
    assert!((qssim(&a, &b).unwrap() - qssim(&b, &a).unwrap()).abs() < 1e-12);
}

#[test]
fn a_hue_rotation_lowers_qssim_but_keeps_the_channel_mean_gray() {
    let a = random_image(80, 60, 8);
    // R -> G -> B -> R: a 120° rotation about the gray axis.
    let rotated = RgbImage::from_fn(80, 60, |x, y| {
        let [r, g, b] = a.get_pixel(x, y).0;
        Rgb([b, r, g])
    });
    for (p, q) in a.pixels().zip(rotated.pixels()) {
        let sum = |v: [u8; 3]| v.iter().map(|&c| u32::from(c)).sum::<u32>();
        assert_eq!(sum(p.0), sum(q.0));
    }
    let score = qssim(&a, &rotated).unwrap();
    assert!(score < 0.95, "hue rotation scored {score}");
}

#[test]
fn qssim_of_constant_images_matches_the_hand_computed_value() {
    // All (128,128,128) against all (64,64,64): μ1 = (1,1,1)/(2√3),
    // μ2 = (1,1,1)/(4√3): |μ1|² = 1/4, |μ2|² = 1/16, μ1·μ2 = 1/8, μ1×μ2 = 0;
    // every σ is 0, so QSSIM = (2/8 + C1) / (1/4 + 1/16 + C1).
    let a = RgbImage::from_pixel(12, 11, Rgb([128, 128, 128]));
    let b = RgbImage::from_pixel(12, 11, Rgb([64, 64, 64]));
    let want = (0.25 + 1e-4) / (0.3125 + 1e-4);
    assert!((qssim(&a, &b).unwrap() - want).abs() < 1e-12);
    // (128,0,0) against (0,128,0): μ1·μ2 = 0, |μ1×μ2|² = 1/144:
    // QSSIM = √(C1² + 4/144) / (1/12 + 1/12 + C1).
    let a = RgbImage::from_pixel(11, 11, Rgb([128, 0, 0]));
    let b = RgbImage::from_pixel(11, 11, Rgb([0, 128, 0]));
    let want = (1e-8f64 + 4.0 / 144.0).sqrt() / (1.0 / 6.0 + 1e-4);
    assert!((qssim(&a, &b).unwrap() - want).abs() < 1e-12);
}

#[test]
fn chelsea_against_its_gray_scores_about_0_984() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/samples/chelsea.png");
    let truth = image::open(&path).unwrap().to_rgb8();
    assert_eq!(truth.dimensions(), (451, 300));
    let gray = RgbImage::from_fn(451, 300, |x, y| {
        let g = yuv::luma8(truth.get_pixel(x, y).0);
        Rgb([g, g, g])
    });
    let score = qssim(&gray, &truth).unwrap();
    eprintln!("chelsea vs its gray: QSSIM {score:.6}");
    assert!((score - 0.984).abs() < 0.0015, "chelsea vs gray: {score}");
}

// ---------------------------------------------------------------------------
// SSIM: a brute-force per-channel implementation with a 2-D window.

fn reference_ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = (a.width() as usize, a.height() as usize);
    let mut win = [[0.0; 11]; 11];
    let mut total = 0.0;
    for (i, row) in win.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (-(((i as f64 - 5.0).powi(2) + (j as f64 - 5.0).powi(2)) / 4.5)).exp();
            total += *v;
        }
    }
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut channels = 0.0;
    for c in 0..3 {
        let mut sum = 0.0;
        for y in 0..h - 10 {
            for x in 0..w - 10 {
                let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for i in 0..11 {
                    for j in 0..11 {
                        let g = win[i][j] / total;
                        let p = f64::from(a.get_pixel((x + j) as u32, (y + i) as u32).0[c]);
                        let q = f64::from(b.get_pixel((x + j) as u32, (y + i) as u32).0[c]);
                        mx += g * p;
                        my += g * q;
                        xx += g * p * p;
                        yy += g * q * q;
                        xy += g * p * q;
                    }
                }
                let (vx, vy, cxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
                sum += ((2.0 * mx * my + c1) * (2.0 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
            }
        }
        channels += sum / ((h - 10) * (w - 10)) as f64;
    }
    channels / 3.0
}

#[test]
fn ssim_agrees_with_brute_force_and_with_the_constant_image_formula() {
    let a = random_image(60, 45, 11);
    let b = noisy_copy(&a, 70.0, 12);
    let (fast, plain) = (ssim(&a, &b).unwrap(), reference_ssim(&a, &b));
    assert!((fast - plain).abs() < 1e-9, "fast {fast} plain {plain}");
    assert_eq!(ssim(&a, &a).unwrap(), 1.0);
    // Constant images x and y: every σ is 0, SSIM = (2xy + C1) / (x² + y² + C1) per channel.
    let x = RgbImage::from_pixel(16, 16, Rgb([100, 100, 100]));
    let y = RgbImage::from_pixel(16, 16, Rgb([150, 150, 150]));
    let c1 = (0.01f64 * 255.0).powi(2);
    let want = (2.0 * 100.0 * 150.0 + c1) / (100.0f64.powi(2) + 150.0f64.powi(2) + c1);
    assert!((ssim(&x, &y).unwrap() - want).abs() < 1e-12);
}

#[test]
fn psnr_matches_a_hand_computed_value() {
    // 10x10 black against one channel of one pixel at 255:
    // MSE = 255² / 300, PSNR = 10 log10(300) = 24.771 dB.
    let a = RgbImage::new(10, 10);
    let mut b = a.clone();
    b.put_pixel(3, 4, Rgb([0, 255, 0]));
    assert!((psnr(&a, &b).unwrap() - 10.0 * 300f64.log10()).abs() < 1e-12);
    assert_eq!(psnr(&a, &a).unwrap(), 100.0, "identical images hit the cap");
}

#[test]
fn auc_is_one_for_identical_images_and_hand_computed_for_a_uniform_error() {
    let a = random_image(30, 20, 13);
    assert_eq!(auc(&a, &a).unwrap(), 1.0);
    // A flat tint against flat gray of the same U/V offset everywhere: the
    // chroma error d is the same at every pixel, so the curve is 0 below
    // ceil(d) and 1 from there: area = (150 - ceil(d) + 1 - 1/2) / 150.
    let gray = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
    let tinted = RgbImage::from_pixel(8, 8, Rgb([114, 93, 100]));
    let [r, g, b] = [114.0, 93.0, 100.0];
    let du: f64 = r * -0.168736 + g * -0.331264 + b * 0.5;
    let dv: f64 = r * 0.5 + g * -0.418688 + b * -0.081312;
    let d = (du * du + dv * dv).sqrt(); // the error at every pixel
    let first = d.ceil(); // first threshold at which every pixel is within
    let want = ((150.0 - first + 1.0) - 0.5) / 150.0;
    assert!((auc(&tinted, &gray).unwrap() - want).abs() < 1e-12, "d = {d}");
}

#[test]
fn colorfulness_of_gray_is_zero_and_of_half_red_is_hand_computed() {
    assert_eq!(colorfulness(&RgbImage::from_pixel(5, 5, Rgb([90, 90, 90]))), 0.0);
    // Half (255,0,0), half black: rg is 255 or 0, yb 127.5 or 0:
    // σ = (127.5, 63.75), μ = (127.5, 63.75): M = 1.3 √(127.5² + 63.75²).
    let img = RgbImage::from_fn(4, 2, |x, _| if x < 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 0]) });
    let want = 1.3 * (127.5f64.powi(2) + 63.75f64.powi(2)).sqrt();
    assert!((colorfulness(&img) - want).abs() < 1e-9);
}

#[test]
fn mismatched_and_tiny_images_are_clear_errors() {
    let a = RgbImage::new(20, 20);
    let b = RgbImage::new(20, 21);
    let err = qssim(&a, &b).unwrap_err();
    assert!(matches!(err, MeasureError::SizeMismatch { .. }));
    assert!(err.to_string().contains("20x21"), "{err}");
    let tiny = RgbImage::new(10, 30);
    assert!(matches!(ssim(&tiny, &tiny), Err(MeasureError::TooSmall { .. })));
    assert!(matches!(qssim(&tiny, &tiny), Err(MeasureError::TooSmall { .. })));
}

// ---------------------------------------------------------------------------
// Hue accuracy against hand-made pictures whose hues are known.

/// A 4x1 picture of these RGB colours.
fn strip(colours: [[u8; 3]; 4]) -> RgbImage {
    RgbImage::from_fn(4, 1, |x, _| Rgb(colours[x as usize]))
}

#[test]
fn hue_counts_the_clearly_coloured_pixels_whose_hue_is_near() {
    use colorize_eval::measures::hue_accuracy;
    // Truth: red, blue, near-gray (radius under 10: not counted), green.
    let truth = strip([[200, 30, 30], [30, 30, 200], [130, 128, 126], [30, 180, 30]]);
    assert_eq!(hue_accuracy(&truth, &truth).unwrap(), 1.0);
    // Gray has no hue: every counted pixel is a miss.
    let gray = strip([[90; 3], [90; 3], [128; 3], [90; 3]]);
    assert_eq!(hue_accuracy(&gray, &truth).unwrap(), 0.0);
    // A paler red (same hue, less chroma), a purple-ish blue rotated by
    // less than 30 degrees, anything on the uncounted pixel, and orange
    // for green (far off): 2 of 3.
    let pred = strip([[150, 90, 90], [70, 30, 200], [0, 255, 0], [220, 140, 30]]);
    let hue_of = |rgb: [u8; 3]| {
        let [_, u, v] = yuv::rgb_to_yuv8(rgb).map(f64::from);
        (v - 128.0).atan2(u - 128.0).to_degrees()
    };
    let turn = (hue_of([70, 30, 200]) - hue_of([30, 30, 200])).abs();
    assert!(turn > 5.0 && turn < 30.0, "the test's blue turns by {turn} degrees");
    assert!((hue_of([220, 140, 30]) - hue_of([30, 180, 30])).abs() > 60.0);
    assert!((hue_accuracy(&pred, &truth).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // A colourless truth has no score.
    assert!(hue_accuracy(&gray, &gray).unwrap().is_nan());
    assert!(hue_accuracy(&gray, &RgbImage::new(2, 2)).is_err(), "sizes differ");
}
