//! Each task's query memory: a DataFusion memory pool per task that passes
//! every reservation on to the engine's shared pool and remembers the most
//! the task's operators (hash tables, aggregates, sorts, buffers) held at
//! once. The runner reads it to keep heavy tasks from running side by side.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A task's view of the shared pool: what it holds now and at most.
#[derive(Debug)]
pub(crate) struct TaskMemory {
    shared: Arc<dyn MemoryPool>,
    used: AtomicUsize,
    peak: AtomicUsize,
}

impl TaskMemory {
    /// A pool for one task, reserving from `shared`.
    pub(crate) fn new(shared: Arc<dyn MemoryPool>) -> Self {
        Self {
            shared,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most the task's operators held at once, in bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        let now = self.used.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl fmt::Display for TaskMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task(used: {}, peak: {}) of {}",
            self.used.load(Ordering::Relaxed),
            self.peak(),
            self.shared
        )
    }
}

impl MemoryPool for TaskMemory {
    fn name(&self) -> &str {
        "task"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.add(additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.shared.try_grow(reservation, additional)?;
        self.add(additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.shared.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::UnboundedMemoryPool;

    #[test]
    fn the_peak_is_the_most_held_at_once_and_the_shared_pool_sees_it_all() {
        let shared: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let task = Arc::new(TaskMemory::new(shared.clone()));
        let pool: Arc<dyn MemoryPool> = task.clone();
        let a = MemoryConsumer::new("a").register(&pool);
        let b = MemoryConsumer::new("b").register(&pool);
        a.grow(100);
        b.try_grow(50).expect("unbounded");
        assert_eq!(shared.reserved(), 150);
        a.shrink(80);
        b.grow(10);
        assert_eq!(task.reserved(), 80);
        assert_eq!(task.peak(), 150);
        drop(a);
        drop(b);
        assert_eq!(shared.reserved(), 0);
        assert_eq!(task.reserved(), 0);
        assert_eq!(task.peak(), 150);
    }
}
