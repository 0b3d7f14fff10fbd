//! QSSIM as a training objective: the eval measure
//! (`colorize_eval::measures::qssim`) rebuilt from differentiable candle
//! ops, so that the head can be trained on the score the method reports.
//!
//! Why: the per-pixel BCE asks for each pixel's conditional-mean chroma, but
//! QSSIM charges for chroma structure (within 11x11 windows) that the truth
//! does not have and pays for structure that it has. A head trained on BCE
//! alone scores below the gray picture on QSSIM at this project's scale of
//! data (README); the added term lets the head learn where colour structure
//! is worth predicting.
//!
//! The prediction is what `colorize` shows: sigmoid(logits) blurred by the
//! head's chroma smoothing (`smooth_chroma`, differentiable), joined to the
//! picture's own Y with the luma-keeping gamut map
//! (`yuv::yuv_to_rgb8_keep_luma`), not rounded to bytes. The truth is the cache's Y and UV through the plain inverse.
//! QSSIM's automatic downsampling is not here: it is the identity below
//! 384 px (the config refuses larger sizes with this term).

use candle_core::{DType, Result, Tensor, Var};
use colorize_core::yuv::INVERSE_CHROMA;
use colorize_eval::measures::window::gaussian_1d;
use colorize_eval::measures::{QSSIM_C1, QSSIM_C2};
use colorize_model::smoothing::{band_matrix, smooth_chroma};

/// The QSSIM term of a dense step: L += weight · (1 − QSSIM).
#[derive(Clone, Copy, Debug)]
pub struct QssimTerm<'a> {
    /// The pictures' Y, [n, 1, h, w], 0..255.
    pub gray: &'a Tensor,
    pub weight: f64,
    /// The head's chroma smoothing (σ in pixels), applied before scoring.
    pub smoothing: f64,
}

/// RGB (0..255 scale, [n, 3, h, w]) of Y [n, 1, h, w] joined to chroma
/// (U, V) [n, 2, h, w] (0..255 scale). `keep_luma`: a colour outside the RGB
/// cube has its chroma scaled towards gray, as `yuv_to_rgb8_keep_luma` does.
pub fn join_chroma(gray: &Tensor, uv: &Tensor, keep_luma: bool) -> Result<Tensor> {
    let du = (uv.narrow(1, 0, 1)? - 128.0)?;
    let dv = (uv.narrow(1, 1, 1)? - 128.0)?;
    let offsets: Vec<Tensor> =
        INVERSE_CHROMA.iter().map(|&[a, b]| (&du * f64::from(a))? + (&dv * f64::from(b))?).collect::<Result<_>>()?;
    let offsets = Tensor::cat(&offsets, 1)?;
    let offsets = if keep_luma { offsets.broadcast_mul(&gamut_scale(gray, &offsets)?)? } else { offsets };
    offsets.broadcast_add(gray)
}

/// The largest s <= 1 with Y + s·d inside 0..255 for every channel's
/// offset d: [n, 1, h, w].
fn gamut_scale(gray: &Tensor, offsets: &Tensor) -> Result<Tensor> {
    let up = offsets.gt(0f64)?;
    let down = offsets.lt(0f64)?;
    // Where the offset is 0 that channel sets no limit (1), and the division
    // is by 1 instead.
    let ones = offsets.ones_like()?;
    let safe = up.where_cond(offsets, &down.where_cond(offsets, &ones)?)?;
    let room_up = (255.0 - gray)?.broadcast_div(&safe)?;
    let room_down = gray.broadcast_div(&safe.neg()?)?;
    let limit = up.where_cond(&room_up, &down.where_cond(&room_down, &ones)?)?;
    limit.min_keepdim(1)?.clamp(0f32, 1f32)
}

/// Mean QSSIM of a batch of RGB pictures (0..255 scale, [n, 3, h, w]),
/// differentiable: the eval measure's formulas (see its module) with the
/// same window and constants.
pub fn qssim(pred: &Tensor, truth: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = pred.dims4()?;
    let scale = 1.0 / (256.0 * 3f64.sqrt());
    let v1 = (pred * scale)?;
    let v2 = (truth * scale)?;
    let dot = |a: &Tensor, b: &Tensor| (a * b)?.sum_keepdim(1);
    let planes = Tensor::cat(&[&v1, &v2, &dot(&v1, &v1)?, &dot(&v2, &v2)?, &dot(&v1, &v2)?, &cross(&v1, &v2)?], 1)?;
    let means = window_mean(&planes.reshape((n * 12, h, w))?)?;
    let (oh, ow) = (means.dim(1)?, means.dim(2)?);
    let means = means.reshape((n, 12, oh, ow))?;
    let part = |start: usize, len: usize| means.narrow(1, start, len);
    let (m1, m2) = (part(0, 3)?, part(3, 3)?);
    let (e11, e22, e12, e_cross) = (part(6, 1)?, part(7, 1)?, part(8, 1)?, part(9, 3)?);

    let mu_dot = dot(&m1, &m2)?;
    let mu_cross = cross(&m1, &m2)?;
    let (m11, m22) = (dot(&m1, &m1)?, dot(&m2, &m2)?);
    // |2 μ1 μ2* + C1| and |2 σ12* + C2| (the quaternion moduli).
    let a_norm = (((&mu_dot * 2.0)? + QSSIM_C1)?.sqr()? + (mu_cross.sqr()?.sum_keepdim(1)? * 4.0)?)?.sqrt()?;
    let s = (&e12 - &mu_dot)?;
    let wv = (&e_cross - &mu_cross)?;
    let b_norm = (((s * 2.0)? + QSSIM_C2)?.sqr()? + (wv.sqr()?.sum_keepdim(1)? * 4.0)?)?.sqrt()?;
    let variances = (((&e11 - &m11)? + (&e22 - &m22)?)? + QSSIM_C2)?;
    let denominator = (((&m11 + &m22)? + QSSIM_C1)? * variances)?;
    (a_norm * b_norm)?.div(&denominator)?.mean_all()
}

/// The cross product of two [n, 3, h, w] fields of vectors.
fn cross(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let c = |t: &Tensor, i: usize| t.narrow(1, i, 1);
    let (a0, a1, a2) = (c(a, 0)?, c(a, 1)?, c(a, 2)?);
    let (b0, b1, b2) = (c(b, 0)?, c(b, 1)?, c(b, 2)?);
    Tensor::cat(&[((&a1 * &b2)? - (&a2 * &b1)?)?, ((&a2 * &b0)? - (&a0 * &b2)?)?, ((&a0 * &b1)? - (&a1 * &b0)?)?], 1)
}

/// The 11x11 Gaussian window's mean at every full window ('valid') of
/// [m, h, w] planes: two separable passes, each a product with a banded
/// matrix (autograd's backward of a product is a product; candle's conv
/// backward on the CPU is far slower at these shapes).
fn window_mean(planes: &Tensor) -> Result<Tensor> {
    let g = gaussian_1d();
    let (_, h, w) = planes.dims3()?;
    let valid = |n: usize| {
        let out = n + 1 - g.len();
        band_matrix(n, out, |i, o| i.checked_sub(o).and_then(|k| g.get(k)).copied().unwrap_or(0.0), planes)
    };
    let rows = planes.broadcast_matmul(&valid(w)?)?;
    valid(h)?.t()?.broadcast_matmul(&rows)
}

/// QSSIM of the step's predictions and the gradient of weight · (1 − QSSIM)
/// with respect to the logits [n, 2, h, w] (targets: (U, V) / 255).
pub fn qssim_gradient(term: QssimTerm<'_>, logits: &Tensor, targets: &Tensor) -> Result<(f64, Tensor)> {
    let z = Var::from_tensor(&logits.detach())?;
    let p = (z.as_tensor().neg()?.exp()? + 1.0)?.recip()?;
    let uv = (smooth_chroma(&p, term.smoothing)? * 255.0)?;
    let gray = term.gray.to_dtype(logits.dtype())?;
    let pred = join_chroma(&gray, &uv, true)?;
    let truth = join_chroma(&gray, &(targets.detach() * 255.0)?, false)?;
    let score = qssim(&pred, &truth)?;
    let grads = (score.neg()? * term.weight)?.backward()?;
    let gradient = match grads.get(&z) {
        Some(g) => g.clone(),
        None => logits.zeros_like()?,
    };
    let value = score.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((value, gradient))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use colorize_core::{yuv, Rng};
    use image::RgbImage;

    fn tensor(values: Vec<f64>, shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// [1, 3, h, w] from an RGB image, 0..255.
    fn planar(image: &RgbImage) -> Tensor {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut values = vec![0.0; 3 * w * h];
        for (i, px) in image.pixels().enumerate() {
            for c in 0..3 {
                values[c * w * h + i] = f64::from(px.0[c]);
            }
        }
        tensor(values, (1, 3, h, w))
    }

    /// A picture with shading, edges and colour, so every term of the map matters.
    fn picture(seed: u64, w: u32, h: u32) -> RgbImage {
        let mut rng = Rng::new(seed);
        let base: Vec<[f64; 3]> = (0..4).map(|_| [0; 3].map(|_| 40.0 + 170.0 * rng.unit_f64())).collect();
        RgbImage::from_fn(w, h, |x, y| {
            let patch = base[usize::from(x >= w / 2) + 2 * usize::from(y >= h / 2)];
            let shade = 0.7 + 0.3 * ((x + 2 * y) as f64 / 7.0).sin();
            image::Rgb(patch.map(|v| (v * shade + 12.0 * (rng.unit_f64() - 0.5)).round().clamp(0.0, 255.0) as u8))
        })
    }

    #[test]
    fn qssim_matches_the_eval_measure() {
        for seed in 0..3 {
            let (a, b) = (picture(seed, 40, 32), picture(seed + 10, 40, 32));
            let want = colorize_eval::measures::qssim(&a, &b).unwrap();
            let got = qssim(&planar(&a), &planar(&b)).unwrap().to_scalar::<f64>().unwrap();
            assert!((got - want).abs() < 1e-7, "seed {seed}: {got} vs {want}");
            let same = qssim(&planar(&a), &planar(&a)).unwrap().to_scalar::<f64>().unwrap();
            assert!((same - 1.0).abs() < 1e-9, "{same}");
        }
    }

    #[test]
    fn joined_chroma_is_the_luma_keeping_conversion_before_rounding() {
        let mut rng = Rng::new(7);
        let n = 500;
        let ys: Vec<f64> =
            (0..n).map(|i| if i % 50 == 0 { 0.0 } else { (256.0 * rng.unit_f64()).floor().min(255.0) }).collect();
        let uvs: Vec<f64> = (0..2 * n).map(|_| 255.0 * rng.unit_f64()).collect();
        let gray = tensor(ys.clone(), (1, 1, 1, n));
        let uv = tensor(uvs.clone(), (1, 2, 1, n));
        for keep_luma in [true, false] {
            let rgb: Vec<Vec<f64>> =
                join_chroma(&gray, &uv, keep_luma).unwrap().squeeze(0).unwrap().squeeze(1).unwrap().to_vec2().unwrap();
            for i in 0..n {
                let (y, u, v) = (ys[i] as f32, uvs[i] as f32, uvs[n + i] as f32);
                let want = if keep_luma { yuv::yuv_to_rgb8_keep_luma(y, u, v) } else { yuv::yuv_to_rgb8(y, u, v) };
                for c in 0..3 {
                    let got = rgb[c][i].round().clamp(0.0, 255.0);
                    assert!(
                        (got - f64::from(want[c])).abs() <= 1.0,
                        "pixel {i} channel {c}: {} vs {}",
                        rgb[c][i],
                        want[c]
                    );
                    if keep_luma {
                        assert!((-1e-6..=255.0 + 1e-6).contains(&rgb[c][i]), "outside the cube: {}", rgb[c][i]);
                    }
                }
            }
        }
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let (n, h, w) = (2, 14, 13);
        let mut rng = Rng::new(3);
        let mut draw =
            |len: usize, f: &mut dyn FnMut(f64) -> f64| (0..len).map(|_| f(rng.unit_f64())).collect::<Vec<_>>();
        let gray = tensor(draw(n * h * w, &mut |r| (20.0 + 215.0 * r).round()), (n, 1, h, w));
        let logits = tensor(draw(n * 2 * h * w, &mut |r| 3.0 * r - 1.5), (n, 2, h, w));
        let targets = tensor(draw(n * 2 * h * w, &mut |r| 0.3 + 0.4 * r), (n, 2, h, w));
        let term = QssimTerm { gray: &gray, weight: 2.5, smoothing: 0.0 };
        let (_, gradient) = qssim_gradient(term, &logits, &targets).unwrap();
        let gradient: Vec<f64> = gradient.flatten_all().unwrap().to_vec1().unwrap();
        let objective = |z: &Tensor| {
            let (q, _) = qssim_gradient(term, z, &targets).unwrap();
            term.weight * (1.0 - q)
        };
        let base: Vec<f64> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        for i in (0..base.len()).step_by(37) {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let numeric =
                (objective(&tensor(plus, (n, 2, h, w))) - objective(&tensor(minus, (n, 2, h, w)))) / (2.0 * eps);
            assert!(
                (numeric - gradient[i]).abs() < 1e-6 + 1e-4 * numeric.abs(),
                "logit {i}: {} vs {numeric}",
                gradient[i]
            );
        }
        assert!(gradient.iter().any(|g| g.abs() > 1e-5), "the gradient vanished");
    }

    #[test]
    fn smoothing_runs_in_f32_and_a_perfect_prediction_scores_one() {
        let (n, h, w) = (1, 16, 16);
        let gray = Tensor::full(100f32, (n, 1, h, w), &Device::Cpu).unwrap();
        let targets = Tensor::full(0.55f32, (n, 2, h, w), &Device::Cpu).unwrap();
        // logit(0.55): a uniform prediction of exactly the targets.
        let logits = Tensor::full((0.55f32 / 0.45).ln(), (n, 2, h, w), &Device::Cpu).unwrap();
        let term = QssimTerm { gray: &gray, weight: 1.0, smoothing: 2.0 };
        let (q, gradient) = qssim_gradient(term, &logits, &targets).unwrap();
        assert!((q - 1.0).abs() < 1e-4, "{q}");
        assert_eq!(gradient.dims(), &[n, 2, h, w]);
    }
}
