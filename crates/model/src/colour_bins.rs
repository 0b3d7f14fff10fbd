//! The (U, V) plane quantised into bins, for a head that predicts a
//! distribution over colours instead of one colour (Zhang, Isola and Efros
//! 2016). Per-channel regression is minimised by the mean of the plausible
//! colours, and the mean of "blue or yellow or red" is a desaturated brown;
//! a distribution keeps the alternatives apart until decoding.
//!
//! The bins are the cells of a square grid of `spacing` units (U and V on
//! their 0..255 scale) centred on gray (128, 128), keeping only the cells
//! that some 8-bit RGB colour falls in: the gamut of the method's YUV.
//! Decoding is the annealed mean: softmax(logits / T) weighs the bin
//! centres; T → 0 is the mode, T = 1 the mean.

use candle_core::{Result, Tensor};

/// The bins of one grid spacing: their centres, in a fixed order (rows of
/// V, then U, ascending).
#[derive(Clone, Debug, PartialEq)]
pub struct ColourBins {
    spacing: u32,
    centres: Vec<[f32; 2]>,
}

/// Grid spacings a head may use: below 2 the bins outnumber what a byte
/// grid can tell apart; above 64 there are fewer than ten.
pub const BIN_SPACINGS: std::ops::RangeInclusive<u32> = 2..=64;

impl ColourBins {
    /// The in-gamut bins of a grid of `spacing` U/V units.
    pub fn in_gamut(spacing: u32) -> ColourBins {
        let spacing = spacing.clamp(*BIN_SPACINGS.start(), *BIN_SPACINGS.end());
        let reach = 128 / spacing as i32 + 1; // cells either side of gray
        let side = (2 * reach + 1) as usize;
        let mut hit = vec![false; side * side];
        // Sweep the cube (every colour, by the exact formulas) and mark the
        // cells hit.
        for r in 0..=255u8 {
            for g in 0..=255u8 {
                for b in 0..=255u8 {
                    let [u, v] = colorize_core::yuv::chroma_f64([r, g, b]);
                    let iu = (u / f64::from(spacing)).round() as i32 + reach;
                    let iv = (v / f64::from(spacing)).round() as i32 + reach;
                    hit[iv as usize * side + iu as usize] = true;
                }
            }
        }
        let centres = (0..side * side)
            .filter(|&k| hit[k])
            .map(|k| {
                let (iv, iu) = ((k / side) as i32 - reach, (k % side) as i32 - reach);
                [128.0 + (iu * spacing as i32) as f32, 128.0 + (iv * spacing as i32) as f32]
            })
            .collect();
        ColourBins { spacing, centres }
    }

    pub fn spacing(&self) -> u32 {
        self.spacing
    }

    pub fn len(&self) -> usize {
        self.centres.len()
    }

    pub fn is_empty(&self) -> bool {
        self.centres.is_empty()
    }

    /// (U, V) of each bin's centre, 0..255 scale.
    pub fn centres(&self) -> &[[f32; 2]] {
        &self.centres
    }

    /// The `count` bins nearest to (u, v), nearest first, with their squared
    /// distances. Ties go to the lower index, so the answer is the same on
    /// every machine.
    pub fn nearest(&self, u: f32, v: f32, count: usize) -> Vec<(usize, f32)> {
        let mut all: Vec<(usize, f32)> =
            self.centres.iter().enumerate().map(|(k, c)| (k, (c[0] - u).powi(2) + (c[1] - v).powi(2))).collect();
        let order = |a: &(usize, f32), b: &(usize, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
        let count = count.min(all.len());
        if count == 0 {
            return Vec::new();
        }
        // A partial selection: the soft encoding asks this of 65,536 targets.
        all.select_nth_unstable_by(count - 1, order);
        all.truncate(count);
        all.sort_by(order);
        all
    }
}

/// The annealed mean of bin `logits` [n, K, h, w] with `centres` [K, 2]
/// (0..255): (U, V) / 255 as [n, 2, h, w]. `temperature` in (0, 1].
pub fn annealed_mean(logits: &Tensor, centres: &Tensor, temperature: f64) -> Result<Tensor> {
    let (n, k, h, w) = logits.dims4()?;
    let p = candle_nn::ops::softmax(&(logits / temperature)?, 1)?;
    // [n, h·w, K] · [K, 2] → [n, h·w, 2]
    let p = p.reshape((n, k, h * w))?.transpose(1, 2)?;
    let uv = p.broadcast_matmul(&(centres / 255.0)?)?;
    uv.transpose(1, 2)?.reshape((n, 2, h, w))?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use colorize_core::yuv::rgb_to_yuv8;

    #[test]
    fn the_bins_cover_every_colour_and_nothing_outside_the_gamut() {
        let bins = ColourBins::in_gamut(10);
        // Every 8-bit colour's nearest bin is within half a cell diagonal.
        let half_diagonal = 10.0 * std::f32::consts::SQRT_2 / 2.0 + 0.51 * std::f32::consts::SQRT_2;
        for rgb in [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [128, 128, 128], [12, 200, 77]] {
            let [_, u, v] = rgb_to_yuv8(rgb);
            let (_, d2) = bins.nearest(f32::from(u), f32::from(v), 1)[0];
            assert!(d2.sqrt() <= half_diagonal, "{rgb:?}: {}", d2.sqrt());
        }
        // The gamut is a hexagon inside the square: corners like (0, 0)
        // (U and V both minimal) hold no colour.
        assert!(bins.centres().iter().all(|c| !(c[0] < 20.0 && c[1] < 20.0)));
        assert!(bins.centres().contains(&[128.0, 128.0]), "gray is a bin centre");
        // Plain count of the square grid's cells for comparison.
        let square = (2 * (128 / 10 + 1) + 1) * (2 * (128 / 10 + 1) + 1);
        assert!(bins.len() > 100 && bins.len() < square, "{} bins", bins.len());
    }

    #[test]
    fn nearest_is_sorted_and_deterministic() {
        let bins = ColourBins::in_gamut(16);
        let got = bins.nearest(130.0, 128.0, 5);
        assert_eq!(got.len(), 5);
        assert_eq!(bins.centres()[got[0].0], [128.0, 128.0]);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn annealed_mean_goes_from_the_mode_to_the_mean() {
        let d = Device::Cpu;
        let centres = Tensor::new(&[[0f32, 100.0], [255.0, 50.0], [100.0, 100.0]], &d).unwrap();
        let logits = Tensor::new(&[1.0f32, 0.5, -1.0], &d).unwrap().reshape((1, 3, 1, 1)).unwrap();
        let probs = [1.0f64, 0.5, -1.0].map(f64::exp);
        let total: f64 = probs.iter().sum();
        let mean_u = (probs[0] * 0.0 + probs[1] * 255.0 + probs[2] * 100.0) / total / 255.0;
        let at = |t: f64| -> Vec<f32> {
            annealed_mean(&logits, &centres, t).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert!((f64::from(at(1.0)[0]) - mean_u).abs() < 1e-6, "T = 1 is the mean");
        let mode = at(0.01);
        assert!(mode[0].abs() < 1e-4 && (mode[1] - 100.0 / 255.0).abs() < 1e-4, "T → 0 is the mode: {mode:?}");
    }
}
