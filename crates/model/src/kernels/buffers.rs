//! What the kernels share: plain slices out of candle's CPU storage, buffers
//! whose pages are already written, a pointer for disjoint parallel writes,
//! and a parallel sum whose rounding does not depend on the threads.

use candle_core::Result;
use rayon::prelude::*;

/// A pointer shared by the tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: every task writes only its own part.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` values on. (A method, so that a closure captures
    /// the whole `SharedOut`, not its raw pointer field.)
    ///
    /// # Safety
    /// `offset` must lie in the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// Consecutive groups a reduction over pieces is split into (fewer when
/// there are fewer pieces): enough to keep a few cores busy.
const SUM_GROUPS: usize = 8;

/// Σ over `pieces` of what `add_piece` adds into a `len`-float sum, in an
/// order fixed by the number of pieces alone: the pieces are cut into
/// `SUM_GROUPS` consecutive groups, each summed in order on some thread
/// (with its own `scratch`), and the groups' sums are added in group order.
/// So f32 rounding, and the gradient, is the same whatever the threads and
/// their work stealing (rayon's `fold`/`reduce` split where the threads
/// happen to be).
pub(crate) fn fixed_order_sum<T: Sync, S>(
    pieces: &[T],
    len: usize,
    scratch: impl Fn() -> S + Sync,
    add_piece: impl Fn(&T, &mut [f32], &mut S) + Sync,
) -> Vec<f32> {
    let per_group = pieces.len().div_ceil(SUM_GROUPS).max(1);
    let groups: Vec<Vec<f32>> = pieces
        .par_chunks(per_group)
        .map(|group| {
            let (mut acc, mut scratch) = (zeroed(len), scratch());
            for piece in group {
                add_piece(piece, &mut acc, &mut scratch);
            }
            acc
        })
        .collect();
    let mut groups = groups.into_iter();
    let mut total = groups.next().unwrap_or_else(|| zeroed(len));
    for group in groups {
        total.iter_mut().zip(&group).for_each(|(a, b)| *a += b);
    }
    total
}

/// A zeroed buffer whose pages this thread has already written. `vec![0; n]`
/// maps fresh pages that are faulted in on first write; when rayon's
/// threads take those faults at once, a pass over a new 20-40 MB buffer ran
/// 3 to 8 times slower here (`resample`'s, one run side by side).
pub fn zeroed(len: usize) -> Vec<f32> {
    let mut buffer = Vec::new();
    buffer.resize(len, 0f32);
    buffer
}

/// A custom op's input as a plain slice.
pub fn contiguous_f32<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    op: &str,
) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op} takes contiguous f32 tensors"),
    }
}

/// A custom op's in-place operand as a plain mutable slice.
pub fn contiguous_f32_mut<'a>(
    storage: &'a mut candle_core::CpuStorage,
    layout: &candle_core::Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{op} takes contiguous f32 tensors"),
    }
}
