//! Chroma smoothing: a Gaussian blur of the predicted U and V planes.
//!
//! The head predicts every pixel on its own, so flat regions (a cloudy
//! sky) come out with patches of colour the truth does not have. QSSIM
//! charges for such chroma structure and gives nothing for the right
//! average colour, so the noise costs more than the colours earn. Chroma
//! is smooth in natural pictures (JPEG halves its resolution), and a blur
//! removes the noise while keeping the colours.
//!
//! The blur is normalised at the borders: each output is the weighted mean
//! of the pixels inside the picture, so a uniform colour stays uniform up
//! to the edge (zero padding would pull the border towards U = V = 0).

use candle_core::{Result, Tensor};

/// Blurs `uv` [n, c, h, w] with a Gaussian of standard deviation `sigma`
/// pixels, truncated at 3 sigma; `sigma` 0 returns the input.
///
/// Each axis is a product with an [len, len] matrix whose column j holds
/// output j's normalised weights: plain differentiable ops whose backward is
/// products too (the training crate's QSSIM term differentiates through
/// this; candle's convolution backward on the CPU is far slower here).
pub fn smooth_chroma(uv: &Tensor, sigma: f64) -> Result<Tensor> {
    if sigma <= 0.0 {
        return Ok(uv.clone());
    }
    let (n, c, h, w) = uv.dims4()?;
    let planes = uv.reshape((n * c, h, w))?;
    let rows = planes.broadcast_matmul(&blur_matrix(w, sigma, uv)?)?;
    let blurred = blur_matrix(h, sigma, uv)?.t()?.broadcast_matmul(&rows)?;
    blurred.reshape((n, c, h, w))
}

/// [len, len]: entry (i, j) is the weight of input i in output j,
/// exp(-d² / 2σ²) for d = |i - j| <= ceil(3σ), divided by the weight that
/// falls inside the picture; in `like`'s dtype and device.
fn blur_matrix(len: usize, sigma: f64, like: &Tensor) -> Result<Tensor> {
    let r = (3.0 * sigma).ceil() as usize;
    let weight = |i: usize, j: usize| {
        let d = i.abs_diff(j);
        if d > r {
            0.0
        } else {
            (-((d * d) as f64) / (2.0 * sigma * sigma)).exp()
        }
    };
    let totals: Vec<f64> = (0..len).map(|j| (0..len).map(|i| weight(i, j)).sum()).collect();
    band_matrix(len, len, |i, j| weight(i, j) / totals[j], like)
}

/// An [n_in, n_out] matrix of `entry(i, o)`, in `like`'s dtype and device:
/// a 1-D filter along one axis as a matrix product (this blur's, and the
/// training crate's QSSIM windows).
pub fn band_matrix(n_in: usize, n_out: usize, entry: impl Fn(usize, usize) -> f64, like: &Tensor) -> Result<Tensor> {
    let values: Vec<f64> = (0..n_in).flat_map(|i| (0..n_out).map(move |o| (i, o))).map(|(i, o)| entry(i, o)).collect();
    Tensor::from_vec(values, (n_in, n_out), like.device())?.to_dtype(like.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The definition, in plain loops: the Gaussian-weighted mean of the
    /// pixels inside the picture.
    fn reference(values: &[f32], h: usize, w: usize, sigma: f64) -> Vec<f32> {
        let r = (3.0 * sigma).ceil() as i64;
        let g = |d: i64| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp();
        let mut out = vec![0.0; h * w];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let (mut sum, mut weight) = (0.0, 0.0);
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (yy, xx) = (y + dy, x + dx);
                        if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                            continue;
                        }
                        let wgt = g(dy) * g(dx);
                        sum += wgt * values[(yy as usize) * w + xx as usize] as f64;
                        weight += wgt;
                    }
                }
                out[(y as usize) * w + x as usize] = (sum / weight) as f32;
            }
        }
        out
    }

    #[test]
    fn matches_the_plain_weighted_mean() {
        let (h, w) = (9, 13);
        let values: Vec<f32> = (0..2 * h * w).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
        let uv = Tensor::from_slice(&values, (1, 2, h, w), &Device::Cpu).unwrap();
        for sigma in [0.7, 1.5, 4.0] {
            let got: Vec<f32> = smooth_chroma(&uv, sigma).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (plane, chunk) in values.chunks(h * w).enumerate() {
                let want = reference(chunk, h, w, sigma);
                for (i, (a, b)) in got[plane * h * w..][..h * w].iter().zip(&want).enumerate() {
                    assert!((a - b).abs() < 1e-5, "sigma {sigma}, plane {plane}, pixel {i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn keeps_a_uniform_colour_and_zero_is_the_identity() {
        let uv = Tensor::full(0.3f32, (2, 2, 8, 8), &Device::Cpu).unwrap();
        let smoothed: Vec<f32> = smooth_chroma(&uv, 2.0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(smoothed.iter().all(|v| (v - 0.3).abs() < 1e-6), "borders included");
        let x = Tensor::arange(0f32, 64.0, &Device::Cpu).unwrap().reshape((1, 1, 8, 8)).unwrap();
        let same: Vec<f32> = smooth_chroma(&x, 0.0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(same, (0..64).map(|i| i as f32).collect::<Vec<_>>());
    }
}
