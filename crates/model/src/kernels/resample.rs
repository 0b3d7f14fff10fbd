//! Bilinear upsampling fused with a convolution's kernel-tap shifts, as
//! sparse matrices applied to blocks of channels-last data.
//!
//! `first_conv` needs, for each kernel tap (dy, dx), the coarse part
//! upsampled and shifted: U(g)(Y + dy, X + dx), zero outside the image.
//! Bilinear upsampling is separable, so this is one sparse matrix along the
//! columns and one along the rows, each with at most two entries per tap.

use super::buffers::{contiguous_f32, zeroed};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// A sparse matrix M [rows, cols] in compressed rows, applied to a tensor
/// read as [outer, cols, inner]: out[o, r, :] = Σ_j M[r, j] · in[o, j, :].
#[derive(Clone, Debug, PartialEq)]
pub struct SparseRows {
    cols: usize,
    /// Row r's entries are `entries[starts[r]..starts[r + 1]]`.
    starts: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl SparseRows {
    /// A matrix with the given columns and rows, each row's (column, weight) entries.
    pub fn from_rows(cols: usize, rows: impl IntoIterator<Item = Vec<(usize, f32)>>) -> SparseRows {
        let mut starts = vec![0];
        let mut entries = Vec::new();
        for row in rows {
            entries.extend(row.into_iter().filter(|&(_, w)| w != 0.0).map(|(j, w)| {
                debug_assert!(j < cols);
                (j as u32, w)
            }));
            starts.push(entries.len());
        }
        SparseRows { cols, starts, entries }
    }

    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn row(&self, r: usize) -> &[(u32, f32)] {
        &self.entries[self.starts[r]..self.starts[r + 1]]
    }

    /// Mᵀ: the adjoint, for gradients (also a gather, so no write conflicts).
    pub fn transpose(&self) -> SparseRows {
        let mut rows: Vec<Vec<(usize, f32)>> = vec![Vec::new(); self.cols];
        for r in 0..self.rows() {
            for &(j, w) in self.row(r) {
                rows[j as usize].push((r, w));
            }
        }
        SparseRows::from_rows(self.rows(), rows)
    }

    /// `x` read as [outer, cols, inner] -> [outer, rows, inner] (CPU, f32).
    pub fn apply(&self, x: &Tensor, inner: usize) -> Result<Tensor> {
        x.apply_op1_no_bwd(&ApplySparseRows { matrix: self, inner })
    }

    /// The plain loop behind `apply`: `out` += M · `x`, block by block.
    fn accumulate_slice(&self, x: &[f32], inner: usize, out: &mut [f32]) -> Result<()> {
        let rows = self.rows();
        let block = self.cols * inner;
        if block == 0 || !x.len().is_multiple_of(block) || out.len() != x.len() / block * rows * inner {
            candle_core::bail!(
                "apply-sparse-rows: {} values are not blocks of {} x {}, or do not make {} outputs",
                x.len(),
                self.cols,
                inner,
                out.len()
            );
        }
        // Tasks of at least ~16k outputs: rayon's cost per task is
        // otherwise more than the work.
        let per_task = (16384 / inner.max(1)).max(1);
        out.par_chunks_mut(inner).with_min_len(per_task).enumerate().for_each(|(i, dst)| {
            let (o, r) = (i / rows, i % rows);
            self.add_row_product(r, &x[o * block..(o + 1) * block], inner, dst);
        });
        Ok(())
    }

    /// `dst` += row r of M times `x` read as [cols, inner].
    pub(crate) fn add_row_product(&self, r: usize, x: &[f32], inner: usize, dst: &mut [f32]) {
        for &(j, w) in self.row(r) {
            let at = j as usize * inner;
            dst.iter_mut().zip(&x[at..at + inner]).for_each(|(d, s)| *d += w * s);
        }
    }

    /// `out` [rows, inner] = M · `x` [cols, inner], on the calling thread.
    pub(crate) fn apply_block(&self, x: &[f32], inner: usize, out: &mut [f32]) {
        for (r, dst) in out.chunks_exact_mut(inner).enumerate() {
            dst.fill(0.0);
            self.add_row_product(r, x, inner, dst);
        }
    }
}

struct ApplySparseRows<'a> {
    matrix: &'a SparseRows,
    inner: usize,
}

impl CustomOp1 for ApplySparseRows<'_> {
    fn name(&self) -> &'static str {
        "apply-sparse-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, CustomOp1::name(self))?;
        let outer = x.len() / (self.matrix.cols * self.inner).max(1);
        let mut out = zeroed(outer * self.matrix.rows() * self.inner);
        self.matrix.accumulate_slice(x, self.inner, &mut out)?;
        Ok((CpuStorage::F32(out), (outer, self.matrix.rows(), self.inner).into()))
    }
}

/// Where output pixel `o` of an axis upsampled from `len` to `out` reads:
/// the two source indices and the weight of the second. Half-pixel centres,
/// clamped at the edges (PyTorch's `align_corners=False`).
pub fn bilinear_axis(o: usize, out: usize, len: usize) -> (usize, usize, f32) {
    let source = ((o as f64 + 0.5) * len as f64 / out as f64 - 0.5).max(0.0);
    let lo = (source.floor() as usize).min(len - 1);
    let hi = (lo + 1).min(len - 1);
    (lo, hi, (source - lo as f64) as f32)
}

/// The upsampled, shifted value at `p + d` of an axis of `out` positions
/// upsampled from `len`: its (source index, weight) entries, none outside.
fn shifted_corners(p: usize, d: isize, out: usize, len: usize) -> Vec<(usize, f32)> {
    let at = p as isize + d;
    if !(0..out as isize).contains(&at) {
        return Vec::new();
    }
    let (lo, hi, l) = bilinear_axis(at as usize, out, len);
    vec![(lo, 1.0 - l), (hi, l)]
}

/// Along the columns, every tap: rows (ky, X) of k·out, columns (x, ky, kx)
/// of len·k² (the layout of a coarse part multiplied by every tap's weight).
pub fn column_operator(out: usize, len: usize, k: usize) -> SparseRows {
    let pad = (k / 2) as isize;
    let rows = (0..k).flat_map(|ky| {
        (0..out).map(move |x| {
            (0..k)
                .flat_map(|kx| {
                    shifted_corners(x, kx as isize - pad, out, len)
                        .into_iter()
                        .map(move |(src, w)| ((src * k + ky) * k + kx, w))
                })
                .collect()
        })
    });
    SparseRows::from_rows(len * k * k, rows)
}

/// Along the rows, summing the taps: rows Y of out, columns (y, ky) of len·k.
pub fn row_operator(out: usize, len: usize, k: usize) -> SparseRows {
    let pad = (k / 2) as isize;
    let rows = (0..out).map(|y| {
        (0..k)
            .flat_map(|ky| {
                shifted_corners(y, ky as isize - pad, out, len).into_iter().map(move |(src, w)| (src * k + ky, w))
            })
            .collect()
    });
    SparseRows::from_rows(len * k, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn dense(m: &SparseRows) -> Vec<Vec<f32>> {
        let mut d = vec![vec![0f32; m.cols()]; m.rows()];
        for (r, row) in d.iter_mut().enumerate() {
            for &(j, w) in m.row(r) {
                row[j as usize] += w;
            }
        }
        d
    }

    #[test]
    fn apply_is_a_matrix_product_per_block() {
        let m = SparseRows::from_rows(3, [vec![(0, 2.0), (2, -1.0)], vec![], vec![(1, 0.5), (1, 0.5)]]);
        // outer 2, cols 3, inner 2
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let t = Tensor::from_vec(x.clone(), 12, &Device::Cpu).unwrap();
        let y: Vec<f32> = m.apply(&t, 2).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut want = Vec::new();
        for o in 0..2 {
            for row in dense(&m) {
                for i in 0..2 {
                    want.push((0..3).map(|j| row[j] * x[(o * 3 + j) * 2 + i]).sum::<f32>());
                }
            }
        }
        assert_eq!(y, want);
    }

    #[test]
    fn the_transpose_is_the_adjoint() {
        let m = column_operator(8, 4, 3);
        let (d, dt) = (dense(&m), dense(&m.transpose()));
        for (r, row) in d.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v, dt[j][r]);
            }
        }
    }

    #[test]
    fn an_unshifted_row_is_bilinear_upsampling() {
        // With k = 1 there is one tap, no shift: rows sum to 1 (the weights
        // of an interpolation) and equal candle's bilinear upsampling of a ramp.
        let (out, len) = (12, 3);
        let m = row_operator(out, len, 1);
        let ramp = Tensor::new(&[[[[1f32], [4.0], [9.0]]]], &Device::Cpu).unwrap(); // [1, 1, 3, 1]
        let up = ramp.upsample_bilinear2d(out, 1, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (row, want) in dense(&m).iter().zip(up) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            let got: f32 = row.iter().zip([1f32, 4.0, 9.0]).map(|(w, v)| w * v).sum();
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}
