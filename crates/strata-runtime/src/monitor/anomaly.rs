//! Volume and duration anomalies: a table's latest task is compared with the
//! range learnt from its earlier runs by a robust z-score (median and median
//! absolute deviation, Iglewicz and Hoaglin's modified z), which one past
//! outlier does not distort.
//!
//! Rows are noisy in small numbers and durations in fractions of a second, so
//! the spread never counts as smaller than 5% of the median and its square
//! root (rows, as for counts) or than 10% of the median and one second
//! (durations): a table that always writes exactly 100 rows is not an
//! anomaly at 101.

use std::collections::BTreeMap;

use serde::Serialize;
use strata_project::{AlertOn, Monitoring};
use strata_state::TaskRecord;

use super::Condition;

/// A value outside a table's learnt range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// The table.
    pub table: String,
    /// `rows` (rows written by the task) or `duration_seconds`.
    pub metric: String,
    /// The latest value.
    pub value: f64,
    /// The median of the earlier runs.
    pub median: f64,
    /// The normal range, `[low, high]`.
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// The robust z-score.
    pub z: f64,
    /// Runs the range was learnt from.
    pub history: usize,
    /// The run of the latest value.
    pub run_id: String,
    /// Downstream tables of the same run whose anomaly this one explains.
    pub downstream: Vec<String>,
}

impl Anomaly {
    /// The alert condition.
    pub fn condition(&self) -> Condition {
        let mut fields = serde_json::Map::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(self) {
            fields = m;
        }
        let what = if self.metric == "rows" {
            format!(
                "wrote {} rows; usually {}–{} (median {})",
                self.value as i64,
                self.low.max(0.0).round() as i64,
                self.high.round() as i64,
                self.median.round() as i64
            )
        } else {
            format!(
                "took {:.1}s; usually {:.1}–{:.1}s (median {:.1}s)",
                self.value,
                self.low.max(0.0),
                self.high,
                self.median
            )
        };
        let also = if self.downstream.is_empty() {
            String::new()
        } else {
            format!("; also affects {}", self.downstream.join(", "))
        };
        let mut tables = vec![self.table.clone()];
        tables.extend(self.downstream.iter().cloned());
        Condition {
            kind: AlertOn::Anomaly,
            subject: format!("{} {}", self.table, self.metric),
            severity: "warn".into(),
            summary: format!(
                "{} {what}, robust z = {:.1} over {} runs{also}",
                self.table, self.z, self.history
            ),
            tables,
            fields,
        }
    }
}

/// The median of `v` (which must not be empty).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The robust z-score of `x` against `history`, with the spread floored at
/// `floor`: 0.6745 (x − median) / max(MAD, floor). Returns (z, median, spread).
pub fn robust_z(history: &[f64], x: f64, floor: f64) -> (f64, f64, f64) {
    let mut h = history.to_vec();
    let med = median(&mut h);
    let mut dev: Vec<f64> = history.iter().map(|v| (v - med).abs()).collect();
    let mad = median(&mut dev).max(floor).max(f64::MIN_POSITIVE);
    (0.6745 * (x - med) / mad, med, mad)
}

/// The anomalies of each table's latest successful task, judged against the
/// runs before it (`history`: newest first, as the state store returns it).
/// A table whose upstream is anomalous in the same run is folded into that
/// upstream's anomaly: one incident per cause, not one per table.
pub fn anomalies(
    history: &BTreeMap<String, Vec<TaskRecord>>,
    latest: &BTreeMap<String, TaskRecord>,
    graph: &strata_graph::Graph,
    cfg: &Monitoring,
) -> Vec<Anomaly> {
    let mut found: Vec<Anomaly> = vec![];
    for (table, runs) in history {
        let Some((last, earlier)) = runs.split_first() else {
            continue;
        };
        // Only the table's latest task counts: an old anomaly is over once a
        // newer run (of any outcome) exists.
        if latest.get(table).map(|t| &t.run_id) != Some(&last.run_id) {
            continue;
        }
        let earlier: Vec<&TaskRecord> = earlier.iter().take(cfg.anomaly_window).collect();
        if earlier.len() < cfg.anomaly_min_history {
            continue;
        }
        let rows: Vec<f64> = earlier.iter().map(|t| t.rows_written as f64).collect();
        let x = last.rows_written as f64;
        let m = median(&mut rows.clone()).abs();
        let (z, med, mad) = robust_z(&rows, x, (0.05 * m).max(m.sqrt()).max(1.0));
        if z.abs() > cfg.anomaly_threshold {
            found.push(range(
                table,
                "rows",
                x,
                z,
                med,
                mad,
                earlier.len(),
                &last.run_id,
                cfg,
            ));
        }
        let secs: Vec<f64> = earlier
            .iter()
            .filter_map(|t| t.duration())
            .map(|d| d.num_milliseconds() as f64 / 1000.0)
            .collect();
        if let Some(d) = last.duration()
            && secs.len() >= cfg.anomaly_min_history
        {
            let x = d.num_milliseconds() as f64 / 1000.0;
            let floor = (0.1 * median(&mut secs.clone())).max(1.0);
            let (z, med, mad) = robust_z(&secs, x, floor);
            // Only slow runs are worth a message.
            if z > cfg.anomaly_threshold {
                found.push(range(
                    table,
                    "duration_seconds",
                    x,
                    z,
                    med,
                    mad,
                    secs.len(),
                    &last.run_id,
                    cfg,
                ));
            }
        }
    }
    // Fold downstream anomalies of the same run and metric into their root.
    let key = |a: &Anomaly| (a.table.clone(), a.metric.clone());
    let index: BTreeMap<(String, String), usize> =
        found.iter().enumerate().map(|(i, a)| (key(a), i)).collect();
    let mut folded_into: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, a) in found.iter().enumerate() {
        let root = graph
            .upstream_closure(&a.table)
            .into_iter()
            .filter(|u| u != &a.table)
            .filter_map(|u| index.get(&(u, a.metric.clone())).copied())
            .filter(|&j| found[j].run_id == a.run_id)
            // The most upstream anomaly: the one with no anomalous upstream itself.
            .find(|&j| {
                graph
                    .upstream_closure(&found[j].table)
                    .into_iter()
                    .filter(|u| u != &found[j].table)
                    .all(|u| {
                        index
                            .get(&(u, a.metric.clone()))
                            .is_none_or(|&k| found[k].run_id != a.run_id)
                    })
            });
        if let Some(r) = root {
            folded_into.insert(i, r);
        }
    }
    for (&i, &r) in &folded_into {
        let t = found[i].table.clone();
        found[r].downstream.push(t);
    }
    found
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !folded_into.contains_key(i))
        .map(|(_, a)| a)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn range(
    table: &str,
    metric: &str,
    x: f64,
    z: f64,
    med: f64,
    spread: f64,
    history: usize,
    run_id: &str,
    cfg: &Monitoring,
) -> Anomaly {
    let half = cfg.anomaly_threshold * spread / 0.6745;
    Anomaly {
        table: table.to_string(),
        metric: metric.to_string(),
        value: x,
        median: med,
        low: med - half,
        high: med + half,
        z,
        history,
        run_id: run_id.to_string(),
        downstream: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_z_ignores_one_past_outlier() {
        let h = [100.0, 104.0, 98.0, 101.0, 99.0, 5000.0, 102.0];
        let (z, med, _) = robust_z(&h, 103.0, 1.0);
        assert_eq!(med, 101.0);
        assert!(z.abs() < 3.5, "{z}");
        let (z, _, _) = robust_z(&h, 1000.0, 1.0);
        assert!(z > 100.0, "{z}");
    }

    #[test]
    fn constant_history_uses_the_floor() {
        let h = [100.0; 7];
        let (z, _, _) = robust_z(&h, 101.0, 5.0);
        assert!(z.abs() < 1.0, "{z}");
        let (z, _, _) = robust_z(&h, 1000.0, 5.0);
        assert!(z > 3.5, "{z}");
    }
}
