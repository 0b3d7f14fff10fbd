//! One gemm product of strided f32 matrices on the calling thread: the
//! kernels' single way into the gemm crate (its call takes 19 positional
//! arguments; here each matrix is one named value).

/// A matrix in memory: element (i, j) is at `ptr` + i·`row_step` +
/// j·`col_step` (in floats).
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    pub ptr: P,
    pub row_step: isize,
    pub col_step: isize,
}

impl<P> Strided<P> {
    /// Rows one after another, `row_step` apart; each row's elements adjacent.
    pub(crate) fn rows(ptr: P, row_step: usize) -> Strided<P> {
        Strided { ptr, row_step: row_step as isize, col_step: 1 }
    }

    /// Columns one after another, `col_step` apart; each column's elements
    /// adjacent (the transpose of a `rows` matrix).
    pub(crate) fn columns(ptr: P, col_step: usize) -> Strided<P> {
        Strided { ptr, row_step: 1, col_step: col_step as isize }
    }
}

/// `dst` (m x n) = `lhs` (m x k) · `rhs` (k x n), plus `dst`'s own values
/// when `accumulate`. Single-threaded: the callers split the work.
///
/// # Safety
/// Every element of the three matrices, as their steps address them, lies
/// in its buffer; `dst`'s elements are distinct and no one else touches
/// them during the call.
pub(crate) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    accumulate: bool,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr,
        dst.col_step,
        dst.row_step,
        accumulate,
        lhs.ptr,
        lhs.col_step,
        lhs.row_step,
        rhs.ptr,
        rhs.col_step,
        rhs.row_step,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
