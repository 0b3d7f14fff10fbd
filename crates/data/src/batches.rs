//! Shuffled batches from a `UvCache`, assembled on a background thread.
//!
//! The order of epoch e is a permutation drawn from (seed, e) alone, so a
//! run resumed at (epoch, batch) sees exactly the batches it would have seen.

use crate::{DataError, UvCache};
use colorize_core::Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Batches assembled ahead of the consumer.
const PREFETCH: usize = 2;

/// A batch of cached images, planes stacked.
#[derive(Clone, Debug)]
pub struct Batch {
    pub epoch: u64,
    /// Position of this batch within its epoch.
    pub index: usize,
    /// Cache indices of the images, in order.
    pub ids: Vec<usize>,
    /// [n, S, S]
    pub y: Vec<u8>,
    /// [n, 2, S, S]
    pub uv: Vec<u8>,
}

/// The order in which epoch `epoch` visits `len` images.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    Rng::derived(seed, epoch.wrapping_add(0x5eed_0000_0000)).permutation(len)
}

/// Batches in one epoch; the last one may be smaller.
pub fn batches_per_epoch(len: usize, batch_size: usize) -> usize {
    len.div_ceil(batch_size)
}

/// Stacks the images `ids` of the cache into one batch.
pub fn assemble(cache: &UvCache, epoch: u64, index: usize, ids: Vec<usize>) -> Result<Batch, DataError> {
    let area = cache.side().area();
    let mut y = Vec::with_capacity(ids.len() * area);
    let mut uv = Vec::with_capacity(ids.len() * 2 * area);
    for &i in &ids {
        let image = cache.get(i)?;
        y.extend_from_slice(image.y);
        uv.extend_from_slice(image.uv);
    }
    Ok(Batch { epoch, index, ids, y, uv })
}

/// An endless stream of batches, epoch after epoch, starting at a given
/// (epoch, batch) position. Dropping it stops its thread.
pub struct BatchLoader {
    receiver: Option<Receiver<Result<Batch, DataError>>>,
    worker: Option<JoinHandle<()>>,
}

impl BatchLoader {
    /// Starts the loader thread; an empty cache or a batch size of 0 is an error.
    pub fn start(
        cache: Arc<UvCache>,
        seed: u64,
        batch_size: usize,
        epoch: u64,
        batch: usize,
    ) -> Result<BatchLoader, DataError> {
        if batch_size == 0 {
            return Err(DataError::Loader("the batch size is 0".into()));
        }
        if cache.is_empty() {
            return Err(DataError::Loader("the cache holds no images".into()));
        }
        let per_epoch = batches_per_epoch(cache.len(), batch_size);
        let mut order = (epoch, epoch_order(cache.len(), seed, epoch));
        BatchLoader::from_fn(per_epoch, epoch, batch, move |epoch, b| {
            if order.0 != epoch {
                order = (epoch, epoch_order(cache.len(), seed, epoch));
            }
            let end = ((b + 1) * batch_size).min(order.1.len());
            assemble(&cache, epoch, b, order.1[b * batch_size..end].to_vec())
        })
    }

    /// The loader's thread around any batch maker: `make(epoch, index)` for
    /// index 0..`per_epoch`, epoch after epoch, from (`epoch`, `batch`). The
    /// first error it returns ends the stream and is the consumer's next.
    pub fn from_fn(
        per_epoch: usize,
        epoch: u64,
        batch: usize,
        mut make: impl FnMut(u64, usize) -> Result<Batch, DataError> + Send + 'static,
    ) -> Result<BatchLoader, DataError> {
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::Builder::new()
            .name("batch-loader".into())
            .spawn(move || {
                let (mut epoch, mut index) = (epoch, batch);
                loop {
                    for b in index..per_epoch {
                        let made = make(epoch, b);
                        let failed = made.is_err();
                        if sender.send(made).is_err() || failed {
                            return; // the consumer is gone, or has the error
                        }
                    }
                    epoch += 1;
                    index = 0;
                }
            })
            .map_err(|e| DataError::Loader(format!("cannot start its thread: {e}")))?;
        Ok(BatchLoader { receiver: Some(receiver), worker: Some(worker) })
    }

    /// The next batch. The stream is endless, so no batch means the loader
    /// failed: its error, or why its thread died (its panic message).
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        match self.receiver.as_ref().and_then(|r| r.recv().ok()) {
            Some(Ok(batch)) => return Ok(batch),
            Some(Err(error)) => {
                self.receiver = None;
                return Err(error);
            }
            None => {}
        }
        self.receiver = None;
        let reason = match self.worker.take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "it panicked".into()),
            _ => "its thread ended".into(),
        };
        Err(DataError::Loader(format!("the batch loader stopped: {reason}")))
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        drop(self.receiver.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_batch(epoch: u64, index: usize) -> Result<Batch, DataError> {
        Ok(Batch { epoch, index, ids: vec![index], y: Vec::new(), uv: Vec::new() })
    }

    #[test]
    fn a_loader_thread_that_dies_is_an_error_that_says_why() {
        let mut loader = BatchLoader::from_fn(4, 0, 0, |epoch, index| {
            if index == 2 {
                panic!("shard 7 is unreadable");
            }
            empty_batch(epoch, index)
        })
        .unwrap();
        assert_eq!(loader.next_batch().unwrap().index, 0);
        assert_eq!(loader.next_batch().unwrap().index, 1);
        let err = loader.next_batch().unwrap_err().to_string();
        assert!(err.contains("stopped") && err.contains("shard 7 is unreadable"), "{err}");
        assert!(loader.next_batch().is_err(), "and stays stopped");
    }

    #[test]
    fn a_batch_that_cannot_be_made_is_the_consumers_error() {
        let mut loader = BatchLoader::from_fn(4, 0, 0, |epoch, index| {
            if index == 1 {
                return Err(DataError::NoSuchImage { path: "c".into(), index: 9, len: 3 });
            }
            empty_batch(epoch, index)
        })
        .unwrap();
        assert_eq!(loader.next_batch().unwrap().index, 0);
        let err = loader.next_batch().unwrap_err().to_string();
        assert!(err.contains("no image 9"), "{err}");
        assert!(loader.next_batch().is_err(), "and the stream ends");
    }

    #[test]
    fn epochs_follow_each_other_from_the_start_position() {
        let mut loader = BatchLoader::from_fn(3, 5, 2, empty_batch).unwrap();
        let got: Vec<(u64, usize)> = (0..4).map(|_| loader.next_batch().map(|b| (b.epoch, b.index)).unwrap()).collect();
        assert_eq!(got, [(5, 2), (6, 0), (6, 1), (6, 2)]);
    }
}
