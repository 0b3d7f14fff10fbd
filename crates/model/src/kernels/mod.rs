//! CPU kernels: the custom candle ops that make the method fast on the CPU,
//! apart from the method itself.
//!
//! Each op family has one file, and each public function here has two
//! paths: the fast one (a custom op over plain `f32` slices: gemm calls,
//! layouts, sparse passes) and its **reference**, the same computation in
//! stock candle ops, which is what every other device runs. Each file's
//! tests check the fast path against its reference.
//!
//! - `convolution`: the stride-1 'same' convolution (`conv2d_same`).
//! - `weight_gradient`: a convolution's weight gradient.
//! - `first_conv`: the head's first convolution from the hypercolumn's parts;
//!   `coarse_rows`: its coarse parts' share and weight gradient, a few
//!   coarse rows at a time.
//! - `resample`, `channels_last`: the sparse upsampling passes and layout
//!   changes that `first_conv` runs on.
//! - `pad`, `standardise`, `relu_backward`: one-pass element ops.
//! - `buffers`: slices out of candle storage, page-faulted buffers, the
//!   fixed-order parallel sum; `product`: one gemm product of strided
//!   matrices.
//!
//! **Invariant:** the choice between the two paths is made in one place,
//! [`fast_cpu`]. Off the CPU, for other dtypes, or when the reference path is
//! forced ([`force_reference`], [`ReferenceScope`]), every op takes its
//! reference, so the code a GPU runs is tested on the CPU too.

pub mod buffers;
pub mod channels_last;
pub mod coarse_rows;
pub mod convolution;
pub mod first_conv;
pub mod pad;
mod product;
pub mod relu_backward;
pub mod resample;
pub mod standardise;
pub mod weight_gradient;
pub mod winograd;

use candle_core::{DType, Tensor};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

static REFERENCE_EVERYWHERE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static REFERENCE_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Whether `tensors` take the fast CPU kernels: all of them CPU `f32`, and
/// the reference path not forced.
pub fn fast_cpu(tensors: &[&Tensor]) -> bool {
    !reference_forced() && tensors.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Whether the reference (device-generic) path is forced, for the whole
/// process or on this thread.
pub fn reference_forced() -> bool {
    REFERENCE_EVERYWHERE.load(Ordering::Relaxed) || REFERENCE_HERE.with(Cell::get)
}

/// Sends every op of the process through its reference path, even on the
/// CPU (`--kernels reference`: the path a GPU takes, run where there is
/// none).
pub fn force_reference(on: bool) {
    REFERENCE_EVERYWHERE.store(on, Ordering::Relaxed);
}

/// While alive, ops called on this thread take their reference path (for
/// tests, which run side by side in one process). The choice is made on
/// the calling thread, before an op is applied, so the ops' own worker
/// threads need not see it.
pub struct ReferenceScope {
    before: bool,
}

impl ReferenceScope {
    pub fn enter() -> ReferenceScope {
        ReferenceScope { before: REFERENCE_HERE.with(|r| r.replace(true)) }
    }
}

impl Drop for ReferenceScope {
    fn drop(&mut self) {
        REFERENCE_HERE.with(|r| r.set(self.before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_reference_scope_applies_to_its_thread_and_ends_with_it() {
        let x = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let bf16 = Tensor::zeros(4, DType::BF16, &Device::Cpu).unwrap();
        assert!(fast_cpu(&[&x]));
        assert!(!fast_cpu(&[&x, &bf16]), "one tensor off the fast path sends the op to its reference");
        {
            let _scope = ReferenceScope::enter();
            assert!(!fast_cpu(&[&x]));
            let elsewhere = std::thread::spawn(move || fast_cpu(&[&x])).join().unwrap();
            assert!(elsewhere, "another thread is not in the scope");
        }
        let x = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        assert!(fast_cpu(&[&x]));
    }
}
