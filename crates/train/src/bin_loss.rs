//! The classification loss over colour bins (Zhang, Isola and Efros 2016),
//! for a head whose output is `HeadOutput::Bins`:
//!
//! - each target (U, V) is soft-encoded over its `neighbours` nearest bins
//!   with Gaussian weights of σ `sigma` U/V units, so that a neighbouring
//!   colour is not counted as wholly wrong;
//! - each pixel's cross-entropy is weighted by its nearest bin's
//!   rebalancing weight, w ∝ 1 / ((1 − r) / K + r p̃), where p̃ is the
//!   training set's bin frequency smoothed by the same Gaussian and r the
//!   config's `rebalance` (0: every bin weighs 1; Zhang et al.'s is 0.5),
//!   normalised so that the expected weight is 1.
//!
//! L = −1/P Σ_pixels w Σ_q Z_q log softmax(z)_q;  ∂L/∂z = w (softmax(z) − Z) / P.

use colorize_data::UvCache;
use colorize_model::colour_bins::ColourBins;
use serde::{Deserialize, Serialize};

/// `[train.bins]`: the soft encoding and the rebalancing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinLossConfig {
    /// Bins each target is spread over (Zhang et al.: 5).
    #[serde(default = "d_neighbours")]
    pub neighbours: usize,
    /// σ of the soft encoding's Gaussian and of the frequencies'
    /// smoothing, in U/V units (Zhang et al.: 5 in Lab's a, b).
    #[serde(default = "d_sigma")]
    pub sigma: f64,
    /// Strength of the rebalancing of rare colours, 0 (none) to 1 (inverse
    /// frequency); Zhang et al.'s 0.5.
    #[serde(default)]
    pub rebalance: f64,
}

fn d_neighbours() -> usize {
    5
}
fn d_sigma() -> f64 {
    5.0
}

impl Default for BinLossConfig {
    fn default() -> Self {
        BinLossConfig { neighbours: d_neighbours(), sigma: d_sigma(), rebalance: 0.0 }
    }
}

impl BinLossConfig {
    /// Range checks: (key, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=16).contains(&self.neighbours) {
            return Err(("train.bins.neighbours", format!("{} is out of range: 1 to 16", self.neighbours)));
        }
        if !(self.sigma > 0.0 && self.sigma <= 64.0) {
            return Err(("train.bins.sigma", format!("{} is out of range: above 0, at most 64", self.sigma)));
        }
        if !(0.0..=1.0).contains(&self.rebalance) {
            return Err(("train.bins.rebalance", format!("{} is out of range: 0 to 1", self.rebalance)));
        }
        Ok(())
    }
}

/// The soft encoding of every (U, V) byte pair: a lookup table, so that a
/// batch's targets cost a copy per pixel.
#[derive(Clone)]
pub struct SoftEncoding {
    bins: usize,
    neighbours: usize,
    /// For pair u·256 + v: `neighbours` (bin, weight), nearest first.
    table: Vec<(u32, f32)>,
}

impl std::fmt::Debug for SoftEncoding {
    // The table has 65,536 rows: say what it is, not what it holds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftEncoding {{ bins: {}, neighbours: {} }}", self.bins, self.neighbours)
    }
}

impl SoftEncoding {
    pub fn new(bins: &ColourBins, config: &BinLossConfig) -> SoftEncoding {
        let neighbours = config.neighbours.min(bins.len());
        let two_sigma_sq = (2.0 * config.sigma * config.sigma) as f32;
        let mut table = Vec::with_capacity(256 * 256 * neighbours);
        for u in 0..256 {
            for v in 0..256 {
                let near = bins.nearest(u as f32, v as f32, neighbours);
                let weights: Vec<f32> = near.iter().map(|&(_, d2)| (-d2 / two_sigma_sq).exp()).collect();
                let total: f32 = weights.iter().sum();
                table.extend(near.iter().zip(&weights).map(|(&(k, _), &w)| (k as u32, w / total)));
            }
        }
        SoftEncoding { bins: bins.len(), neighbours, table }
    }

    pub fn bins(&self) -> usize {
        self.bins
    }

    /// The (bin, weight) pairs of one target, nearest bin first.
    pub fn encode(&self, u: u8, v: u8) -> &[(u32, f32)] {
        let at = (usize::from(u) * 256 + usize::from(v)) * self.neighbours;
        &self.table[at..at + self.neighbours]
    }

    /// The bin nearest to a target.
    pub fn nearest(&self, u: u8, v: u8) -> usize {
        self.encode(u, v)[0].0 as usize
    }
}

/// What the bins loss needs beyond the logits: the encoding and each bin's
/// rebalancing weight.
#[derive(Clone, Debug)]
pub struct BinObjective {
    pub encoding: SoftEncoding,
    pub weights: Vec<f32>,
}

/// The training set's bin frequencies: the share of the cache's pixels
/// whose nearest bin each is, smoothed over the plane by a Gaussian of
/// `sigma` U/V units, summing to 1.
pub fn bin_frequencies(cache: &UvCache, bins: &ColourBins, encoding: &SoftEncoding, sigma: f64) -> Vec<f64> {
    let mut counts = vec![0u64; bins.len()];
    let area = (cache.side().get() as usize).pow(2);
    for image in cache.images() {
        let (u, v) = image.uv.split_at(area);
        for (&u, &v) in u.iter().zip(v) {
            counts[encoding.nearest(u, v)] += 1;
        }
    }
    smooth_frequencies(&counts, bins, sigma)
}

/// Counts per bin → frequencies smoothed over the bins' centres.
pub fn smooth_frequencies(counts: &[u64], bins: &ColourBins, sigma: f64) -> Vec<f64> {
    let centres = bins.centres();
    let total = counts.iter().sum::<u64>().max(1) as f64;
    let two_sigma_sq = 2.0 * sigma * sigma;
    let mut smoothed: Vec<f64> = centres
        .iter()
        .map(|a| {
            let (mut sum, mut norm) = (0.0, 0.0);
            for (b, &count) in centres.iter().zip(counts) {
                let d2 = f64::from((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2));
                let g = (-d2 / two_sigma_sq).exp();
                sum += g * count as f64 / total;
                norm += g;
            }
            sum / norm
        })
        .collect();
    let mass: f64 = smoothed.iter().sum();
    if mass > 0.0 {
        smoothed.iter_mut().for_each(|p| *p /= mass);
    }
    smoothed
}

/// Rebalancing weights from frequencies: 1 / ((1 − r)/K + r p̃), scaled so
/// that Σ p̃ w = 1 (the expected weight of a training pixel is 1).
pub fn rebalancing_weights(frequencies: &[f64], rebalance: f64) -> Vec<f32> {
    let k = frequencies.len() as f64;
    let raw: Vec<f64> = frequencies.iter().map(|p| 1.0 / ((1.0 - rebalance) / k + rebalance * p).max(1e-12)).collect();
    let expected: f64 = raw.iter().zip(frequencies).map(|(w, p)| w * p).sum();
    raw.iter().map(|w| (w / expected.max(1e-12)) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_targets_sum_to_one_and_favour_the_nearest_bin() {
        let bins = ColourBins::in_gamut(10);
        let encoding = SoftEncoding::new(&bins, &BinLossConfig::default());
        for (u, v) in [(128u8, 128u8), (90, 170), (200, 40), (3, 130)] {
            let pairs = encoding.encode(u, v);
            assert_eq!(pairs.len(), 5);
            let total: f32 = pairs.iter().map(|p| p.1).sum();
            assert!((total - 1.0).abs() < 1e-5);
            assert!(pairs.windows(2).all(|w| w[0].1 >= w[1].1), "nearest weighs most: {pairs:?}");
            // The weights are the Gaussian of the distances, independently computed.
            let near = bins.nearest(f32::from(u), f32::from(v), 5);
            let g: Vec<f64> = near.iter().map(|&(_, d2)| (-f64::from(d2) / 50.0).exp()).collect();
            let sum: f64 = g.iter().sum();
            for ((k, w), (kk, gg)) in pairs.iter().zip(near.iter().map(|n| n.0).zip(&g)) {
                assert_eq!(*k as usize, kk);
                assert!((f64::from(*w) - gg / sum).abs() < 1e-5);
            }
        }
        assert_eq!(bins.centres()[encoding.nearest(128, 128)], [128.0, 128.0]);
    }

    #[test]
    fn rebalancing_favours_rare_bins_with_unit_expectation() {
        let p = [0.7, 0.2, 0.1];
        let none = rebalancing_weights(&p, 0.0);
        assert!(none.iter().all(|w| (w - 1.0).abs() < 1e-6), "{none:?}");
        let half = rebalancing_weights(&p, 0.5);
        assert!(half[0] < half[1] && half[1] < half[2], "{half:?}");
        let expected: f64 = half.iter().zip(&p).map(|(w, p)| f64::from(*w) * p).sum();
        assert!((expected - 1.0).abs() < 1e-6);
        // r = 0.5 by hand: 1 / (0.5/3 + 0.5 p), normalised.
        let raw: Vec<f64> = p.iter().map(|p| 1.0 / (0.5 / 3.0 + 0.5 * p)).collect();
        let norm: f64 = raw.iter().zip(&p).map(|(w, p)| w * p).sum();
        for (w, r) in half.iter().zip(&raw) {
            assert!((f64::from(*w) - r / norm).abs() < 1e-5);
        }
    }

    #[test]
    fn smoothing_keeps_the_mass_and_spreads_it() {
        let bins = ColourBins::in_gamut(16);
        let mut counts = vec![0u64; bins.len()];
        let gray = bins.nearest(128.0, 128.0, 1)[0].0;
        counts[gray] = 100;
        let p = smooth_frequencies(&counts, &bins, 16.0);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let neighbour = bins.nearest(144.0, 128.0, 1)[0].0;
        assert!(p[gray] > p[neighbour] && p[neighbour] > 0.0);
    }
}
