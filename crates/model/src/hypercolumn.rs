//! The hypercolumn: the input and the trunk's taps, at the input's size,
//! each channel standardised by constants that travel with the head.

use crate::kernels::standardise::standardise;
use crate::trunk::Taps;
use candle_core::{DType, Result, Tensor, D};

/// Per-channel constants: the head sees (T - shift) * scale. Identity
/// (0, 1) for the raw hypercolumn of the method.
#[derive(Clone, Debug)]
pub struct Standardisation {
    /// [451] (or a deeper trunk's 963 or 1475)
    pub shift: Tensor,
    /// The same length.
    pub scale: Tensor,
}

/// [n, 451, h, w]: x (3), conv1_2 (64), conv2_2 upsampled x2 (128),
/// conv3_3 upsampled x4 (256); a deeper trunk adds conv4_3 upsampled x8
/// (512) and conv5_3 x16 (512). Bilinear, half-pixel centres (PyTorch's
/// `align_corners=False`). Detached: the trunk is frozen, so no gradient
/// ever flows back through it.
pub fn hypercolumn(x: &Tensor, taps: &Taps, standardisation: &Standardisation) -> Result<Tensor> {
    HypercolumnParts::new(x, taps, standardisation)?.dense()
}

/// The standardised hypercolumn kept as its parts at their own resolution:
/// the dense one is 4 (conv2_2) and 16 (conv3_3) times larger than the
/// parts it is upsampled from, and the head's first convolution can run on
/// the parts (`first_conv`).
///
/// The standardisation is applied to each part before any upsampling: a
/// per-channel affine map commutes with bilinear interpolation (its weights
/// sum to 1).
#[derive(Clone, Debug)]
pub struct HypercolumnParts {
    /// [n, 67, h, w]: the input (3) and conv1_2 (64), at the input's size.
    pub full: Tensor,
    /// conv2_2 [n, 128, h/2, w/2] and conv3_3 [n, 256, h/4, w/4], then a
    /// deeper trunk's conv4_3 and conv5_3.
    pub coarse: Vec<Tensor>,
    /// [n, 256]: each picture's scene vector (`scene_vector`).
    pub scene: Tensor,
}

/// The scene vector's length: conv3_3's channels.
pub const SCENE_CHANNELS: usize = 256;

/// The picture-wide mean of the standardised conv3_3 [n, 256, h', w'] ->
/// [n, 256]: what a head with scene context (`HeadConfig::scene_context`)
/// sees of the whole picture, beside the hypercolumn's local view (whose
/// deepest tap reaches ~40 pixels). Taken at conv3_3's own resolution, so
/// the dense, parts and window paths all see the same vector.
pub fn scene_vector(conv3_3: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = conv3_3.dims4()?;
    conv3_3.reshape((n, c, h * w))?.mean(2)
}

impl HypercolumnParts {
    pub fn new(x: &Tensor, taps: &Taps, standardisation: &Standardisation) -> Result<HypercolumnParts> {
        let mut parts = standardised_parts(x, taps, standardisation)?.into_iter().map(|p| p.detach());
        let (Some(x), Some(conv1_2)) = (parts.next(), parts.next()) else {
            candle_core::bail!("the hypercolumn has four parts");
        };
        let coarse: Vec<Tensor> = parts.collect();
        let Some(conv3_3) = coarse.get(1) else { candle_core::bail!("the hypercolumn has four parts or more") };
        let scene = scene_vector(conv3_3)?;
        Ok(HypercolumnParts { full: Tensor::cat(&[x, conv1_2], 1)?, coarse, scene })
    }

    /// (n, h, w) of the hypercolumn.
    pub fn size(&self) -> Result<(usize, usize, usize)> {
        let (n, _, h, w) = self.full.dims4()?;
        Ok((n, h, w))
    }

    /// The dense hypercolumn [n, 451, h, w].
    pub fn dense(&self) -> Result<Tensor> {
        let (_, h, w) = self.size()?;
        let mut all = vec![self.full.clone()];
        for part in &self.coarse {
            all.push(part.upsample_bilinear2d(h, w, false)?);
        }
        Tensor::cat(&all, 1)?.contiguous()
    }
}

/// The parts (input, conv1_2, conv2_2, conv3_3, and a deeper trunk's) at
/// their own resolution, each channel standardised.
fn standardised_parts(x: &Tensor, taps: &Taps, standardisation: &Standardisation) -> Result<Vec<Tensor>> {
    let channels: usize = std::iter::once(x).chain(taps.all()).map(|t| t.dim(1)).sum::<Result<usize>>()?;
    if standardisation.shift.dim(0)? != channels {
        candle_core::bail!(
            "the head reads a hypercolumn of {} channels, the trunk makes {channels}",
            standardisation.shift.dim(0)?
        );
    }
    let mut offset = 0;
    std::iter::once(x)
        .chain(taps.all())
        .map(|part| {
            let c = part.dim(1)?;
            let shift = standardisation.shift.narrow(0, offset, c)?;
            let scale = standardisation.scale.narrow(0, offset, c)?;
            offset += c;
            standardise(part, &shift, &scale)
        })
        .collect()
}

/// Mean and standard deviation of each of the hypercolumn's channels over a batch,
/// measured on the parts at their own resolution: upsampling keeps the mean
/// and smooths the spread a little (by up to ~30% for the busiest conv2_2
/// channels on a synthetic pattern), which is close enough to condition SGD.
/// f64 sums: conv1_2's values reach the thousands.
pub fn channel_moments(x: &Tensor, taps: &Taps) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut mean = Vec::new();
    let mut std = Vec::new();
    for part in std::iter::once(x).chain(taps.all()) {
        let c = part.dim(1)?;
        let per_channel = part.to_dtype(DType::F64)?.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
        let m = per_channel.mean(D::Minus1)?;
        let var = per_channel.broadcast_sub(&m.unsqueeze(1)?)?.sqr()?.mean(D::Minus1)?;
        mean.extend(m.to_vec1::<f64>()?);
        std.extend(var.sqrt()?.to_vec1::<f64>()?);
    }
    Ok((mean, std))
}

/// A pixel of a batch: (image in the batch, row, column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pixel {
    pub image: usize,
    pub row: usize,
    pub col: usize,
}

/// Hypercolumn windows around sampled pixels (see `hypercolumn_patches`).
#[derive(Clone, Debug)]
pub struct HypercolumnWindows {
    /// [pixels, 451, r, r]: the standardised hypercolumn, zero outside the image.
    pub features: Tensor,
    /// [pixels, 1, r, r]: 1 where the window position lies in the image, else 0.
    pub inside: Tensor,
    /// [pixels, 256]: the scene vector of each pixel's picture (`scene_vector`).
    pub scene: Tensor,
}

/// The standardised hypercolumn in an r x r window around each pixel
/// (r odd), computed from the taps at those positions only: the dense
/// [n, 451, h, w] hypercolumn is never built. Equal to the dense
/// hypercolumn's window, with zeros outside the image, which is what the
/// head's first, zero-padded convolution sees there. (Its later layers see
/// zeros outside the image too: a head run on windows multiplies each
/// layer's output by `inside`, and then computes the dense head's output at
/// the centre exactly when r is at least its receptive field.)
///
/// Bilinear sampling as `hypercolumn`'s (half-pixel centres, edges
/// clamped), by four row gathers per part: plain tensor ops, so it runs on
/// any device.
pub fn hypercolumn_patches(
    x: &Tensor,
    taps: &Taps,
    standardisation: &Standardisation,
    pixels: &[Pixel],
    r: usize,
) -> Result<HypercolumnWindows> {
    let (n, _, h, w) = x.dims4()?;
    if r.is_multiple_of(2) {
        candle_core::bail!("patch side {r} must be odd");
    }
    if let Some(p) = pixels.iter().find(|p| p.image >= n || p.row >= h || p.col >= w) {
        candle_core::bail!("pixel {p:?} is outside the batch [{n}, {h}, {w}]");
    }
    // Every window position, pixel-major then row then column.
    let half = r as isize / 2;
    let positions: Vec<Option<(usize, usize, usize)>> = pixels
        .iter()
        .flat_map(|p| {
            (0..r * r).map(move |k| {
                let (y, x) = (p.row as isize + (k / r) as isize - half, p.col as isize + (k % r) as isize - half);
                let inside = (0..h as isize).contains(&y) && (0..w as isize).contains(&x);
                inside.then_some((p.image, y as usize, x as usize))
            })
        })
        .collect();
    let device = x.device();
    let mut parts = Vec::with_capacity(4);
    let standardised = standardised_parts(x, taps, standardisation)?;
    let Some(conv3_3) = standardised.get(3) else { candle_core::bail!("the hypercolumn has four parts or more") };
    let images: Vec<u32> = pixels.iter().map(|p| p.image as u32).collect();
    let scene = scene_vector(conv3_3)?.index_select(&Tensor::from_vec(images, pixels.len(), device)?, 0)?;
    for part in standardised {
        let (_, c, ph, pw) = part.dims4()?;
        let rows = part.permute((0, 2, 3, 1))?.reshape((n * ph * pw, c))?;
        let mut gathered: Option<Tensor> = None;
        // Corners that weigh nothing anywhere (three of four for the parts
        // at full size) are not gathered.
        let corners = bilinear_corners(&positions, (h, w), (ph, pw));
        for (index, weight) in corners.into_iter().filter(|(_, weight)| weight.iter().any(|&w| w != 0.0)) {
            let index = Tensor::from_vec(index, positions.len(), device)?;
            let weight = Tensor::from_vec(weight, (positions.len(), 1), device)?;
            let term = rows.index_select(&index, 0)?.broadcast_mul(&weight)?;
            gathered = Some(match gathered {
                None => term,
                Some(sum) => (sum + term)?,
            });
        }
        // With every position outside the image no corner weighs anything.
        parts.push(match gathered {
            Some(sum) => sum,
            None => Tensor::zeros((positions.len(), c), rows.dtype(), device)?,
        });
    }
    let rows = Tensor::cat(&parts, 1)?; // [pixels * r * r, 451]
    let channels = rows.dim(1)?;
    let features = rows.reshape((pixels.len(), r, r, channels))?.permute((0, 3, 1, 2))?.contiguous()?;
    let inside: Vec<f32> = positions.iter().map(|p| if p.is_some() { 1.0 } else { 0.0 }).collect();
    let inside = Tensor::from_vec(inside, (pixels.len(), 1, r, r), device)?.to_dtype(features.dtype())?;
    Ok(HypercolumnWindows { features: features.detach(), inside, scene: scene.detach() })
}

/// For each of the four bilinear corners: the row (image, y, x) of a part of
/// size (ph, pw) that each position reads, and its weight (0 outside the
/// image), as `kernels::resample::bilinear_axis` interpolates.
fn bilinear_corners(
    positions: &[Option<(usize, usize, usize)>],
    (h, w): (usize, usize),
    (ph, pw): (usize, usize),
) -> [(Vec<u32>, Vec<f32>); 4] {
    let axis = crate::kernels::resample::bilinear_axis;
    let mut corners: [(Vec<u32>, Vec<f32>); 4] = Default::default();
    for position in positions {
        let Some((image, y, x)) = *position else {
            for (index, weight) in &mut corners {
                index.push(0);
                weight.push(0.0);
            }
            continue;
        };
        let (y0, y1, ly) = axis(y, h, ph);
        let (x0, x1, lx) = axis(x, w, pw);
        let row = |yy: usize, xx: usize| ((image * ph + yy) * pw + xx) as u32;
        let taps = [
            (y0, x0, (1.0 - ly) * (1.0 - lx)),
            (y0, x1, (1.0 - ly) * lx),
            (y1, x0, ly * (1.0 - lx)),
            (y1, x1, ly * lx),
        ];
        for ((index, weight), (yy, xx, wt)) in corners.iter_mut().zip(taps) {
            index.push(row(yy, xx));
            weight.push(wt);
        }
    }
    corners
}
