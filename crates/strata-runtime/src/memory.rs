//! Memory-aware admission. Each table is expected to need, in its next
//! build, the peak query memory its last successful build recorded, or, never
//! built, what the executor guesses (the engine: its inputs' data files). A
//! run never needs less than its heaviest task, so that is its budget (and at
//! least [`MIN_BUDGET`], so that small tasks always run side by side): a task
//! starts beside others only while their expected needs and its own fit in
//! it, and a task that does not fit waits, holding the tasks after it back
//! (so it is never starved), until it fits or runs alone.

use std::collections::BTreeMap;

use strata_project::MemoryBudget as Setting;

/// The smallest budget: tasks expected to need less than this together
/// always run side by side, up to `max_parallel`.
pub(crate) const MIN_BUDGET: i64 = 256 << 20;

/// Expected peaks of the plan's tables, and what the running tasks hold.
pub(crate) struct MemoryBudget {
    setting: Setting,
    expected: BTreeMap<String, i64>,
    budget: i64,
    held: BTreeMap<String, i64>,
}

impl MemoryBudget {
    /// A budget for a plan writing `tables`, from each table's last
    /// recorded peak (`peaks`, bytes): the project's own, or the heaviest
    /// expected need (`auto`).
    pub(crate) fn new<'a>(
        setting: Setting,
        mut peaks: BTreeMap<String, i64>,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let tables: std::collections::BTreeSet<&str> = tables.into_iter().collect();
        peaks.retain(|t, _| tables.contains(t.as_str()));
        let budget = match setting {
            Setting::Bytes(n) => n,
            _ => peaks.values().copied().max().unwrap_or(0).max(MIN_BUDGET),
        };
        Self {
            setting,
            expected: peaks,
            budget,
            held: BTreeMap::new(),
        }
    }

    /// Whether there is a budget at all (`memory_budget = "off"`: none).
    pub(crate) fn enabled(&self) -> bool {
        self.setting != Setting::Off
    }

    /// Whether `table`'s need is known (recorded, or guessed already).
    pub(crate) fn knows(&self, table: &str) -> bool {
        self.expected.contains_key(table)
    }

    /// `table` is expected to need `bytes`: the budget grows to it if it is
    /// the heaviest yet.
    pub(crate) fn expect(&mut self, table: &str, bytes: i64) {
        self.expected.insert(table.to_string(), bytes.max(0));
        if self.setting == Setting::Auto {
            self.budget = self.budget.max(bytes);
        }
    }

    fn expected(&self, table: &str) -> i64 {
        self.expected.get(table).copied().unwrap_or(0).max(0)
    }

    /// Whether a task writing `table` may start now: always when nothing
    /// else runs, else when its expected peak fits beside the others'.
    pub(crate) fn admits(&self, table: &str, alone: bool) -> bool {
        alone
            || !self.enabled()
            || self.held.values().sum::<i64>() + self.expected(table) <= self.budget
    }

    /// Task `task`, writing `table`, started.
    pub(crate) fn start(&mut self, task: &str, table: &str) {
        self.held.insert(task.to_string(), self.expected(table));
    }

    /// Task `task` ended.
    pub(crate) fn finish(&mut self, task: &str) {
        self.held.remove(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;

    fn budget(peaks: &[(&str, i64)], plan: &[&str]) -> MemoryBudget {
        with(Setting::Auto, peaks, plan)
    }

    fn with(setting: Setting, peaks: &[(&str, i64)], plan: &[&str]) -> MemoryBudget {
        MemoryBudget::new(
            setting,
            peaks.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            plan.iter().copied(),
        )
    }

    #[test]
    fn the_heaviest_task_runs_alone_and_light_ones_share() {
        let mut b = budget(
            &[("big", 900 * MB), ("mid", 300 * MB), ("small", 100 * MB)],
            &["big", "mid", "small", "new"],
        );
        assert!(b.admits("big", true));
        b.start("big", "big");
        assert!(
            !b.admits("mid", false),
            "900 + 300 MB is over the 900 MB budget"
        );
        assert!(!b.admits("small", false));
        assert!(!b.knows("new"));
        b.expect("new", 0);
        assert!(b.admits("new", false), "a table guessed to need nothing");
        b.expect("huge", 2000 * MB);
        assert!(b.knows("huge"));
        assert!(b.admits("mid", false), "the budget grew to 2000 MB");
        assert!(!b.admits("huge", false), "but not beside 900 MB");
        b.finish("big");
        b.start("mid", "mid");
        assert!(b.admits("small", false), "300 + 100 MB fit in 900 MB");
    }

    #[test]
    fn small_plans_share_at_least_the_minimum_and_other_tables_do_not_count() {
        let mut b = budget(
            &[("a", 100 * MB), ("b", 100 * MB), ("elsewhere", 4096 * MB)],
            &["a", "b"],
        );
        b.start("a", "a");
        assert!(b.admits("b", false), "200 MB is within the 256 MB minimum");
        let mut b = budget(&[("a", 200 * MB), ("b", 200 * MB)], &["a", "b"]);
        b.start("a", "a");
        assert!(
            !b.admits("b", false),
            "400 MB is over both 200 MB and the minimum"
        );
    }

    #[test]
    fn a_fixed_budget_does_not_grow_and_off_admits_all() {
        let mut b = with(Setting::Bytes(500 * MB), &[("a", 300 * MB)], &["a", "b"]);
        b.start("a", "a");
        b.expect("b", 300 * MB);
        assert!(!b.admits("b", false), "600 MB is over the 500 MB set");
        let mut b = with(
            Setting::Off,
            &[("a", 900 * MB), ("b", 900 * MB)],
            &["a", "b"],
        );
        b.start("a", "a");
        assert!(b.admits("b", false));
    }
}
