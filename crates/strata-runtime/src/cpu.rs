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

    #[test]
    fn a_busy_task_is_charged_its_cpu_time() {
        let mut c = CpuShares::new();
        c.start("busy");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let ms = c.finish("busy");
        assert!(
            (150..=400).contains(&ms),
            "charged {ms} ms for 200 ms of spinning"
        );
        c.start("idle");
        std::thread::sleep(Duration::from_millis(100));
        assert!(c.finish("idle") < 50);
    }
}
