//! CPU time per task. The process's CPU time is read whenever a task starts
//! or ends; what was spent in between is split evenly among the tasks that
//! were running then. Exact for a task running alone, a fair share otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time spent by the whole process so far (zero where it cannot be read).
fn process_cpu() -> Duration {
    cpu_time::ProcessTime::try_now()
        .map(|t| t.as_duration())
        .unwrap_or_default()
}

/// Accumulates each running task's share of the process's CPU time.
pub(crate) struct CpuShares {
    last: Duration,
    running: BTreeMap<String, Duration>,
}

impl CpuShares {
    pub(crate) fn new() -> Self {
        Self {
            last: process_cpu(),
            running: BTreeMap::new(),
        }
    }

    /// Shares out what was spent since the last event among the running tasks.
    fn settle(&mut self) {
        let now = process_cpu();
        let spent = now.saturating_sub(self.last);
        self.last = now;
        let n = self.running.len() as u32;
        if n > 0 {
            let share = spent / n;
            for v in self.running.values_mut() {
                *v += share;
            }
        }
    }

    /// A task started.
    pub(crate) fn start(&mut self, task: &str) {
        self.settle();
        self.running.insert(task.to_string(), Duration::ZERO);
    }

    /// A task ended: its CPU time in milliseconds.
    pub(crate) fn finish(&mut self, task: &str) -> i64 {
        self.settle();
        self.running
            .remove(task)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until this thread has used `d` of CPU time.
    fn spin(d: Duration) {
        let start = cpu_time::ThreadTime::now();
        let mut x = 0u64;
        while start.elapsed() < d {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
    }

    // Other tests run in this process at the same time, so only lower bounds
    // and the even split can be asserted.
    #[test]
    fn a_busy_task_is_charged_at_least_its_cpu_time() {
        let mut c = CpuShares::new();
        c.start("busy");
        spin(Duration::from_millis(200));
        let ms = c.finish("busy");
        assert!(ms >= 195, "charged {ms} ms for 200 ms of spinning");
    }

    #[test]
    fn tasks_running_together_share_evenly() {
        let mut c = CpuShares::new();
        c.start("a");
        c.start("b");
        spin(Duration::from_millis(200));
        let a = c.finish("a");
        let b = c.finish("b");
        assert!(a >= 95 && b >= 95, "{a} {b}");
        assert!(a + b >= 195, "{a} {b}");
    }
}
