//! Progress bars for runs: one bar over the tasks, naming those running.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use strata_runtime::{Event, Observer};

/// Draws run progress on stderr (hidden when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
    running: Mutex<BTreeSet<String>>,
}

impl Progress {
    /// A progress bar, drawn once the run starts.
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks  {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            bar,
            running: Mutex::new(BTreeSet::new()),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn show_running(&self) {
        if let Ok(r) = self.running.lock() {
            self.bar
                .set_message(r.iter().cloned().collect::<Vec<_>>().join(", "));
        }
    }
}

impl Observer for Progress {
    fn on_event(&self, event: &Event) {
        match event {
            Event::RunStarted { tasks, .. } => self.bar.set_length(*tasks as u64),
            Event::TaskStarted { task } => {
                if let Ok(mut r) = self.running.lock() {
                    r.insert(task.clone());
                }
                self.show_running();
            }
            Event::TaskFinished { record } => {
                if let Ok(mut r) = self.running.lock() {
                    r.remove(&record.task);
                }
                self.bar.inc(1);
                if record.status == "failed" {
                    self.bar.println(format!("✗ {} failed", record.task));
                }
                self.show_running();
            }
        }
    }
}
