//! `strata alerts …`, `strata runs --costs`, and the alert evaluation that
//! follows every run and that `strata serve` repeats.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use strata_graph::Graph;
use strata_project::Project;
use strata_runtime::monitor::{self, Delivery, channels::Channels};
use strata_runtime::rfc3339;
use strata_state::{Silence, StateStore};

use crate::output::{right, table};
use crate::{Failure, Format, input};

/// Evaluates the project's health at `now` and sends what is due to each
/// alert rule's channels; prints one line per notification.
pub(crate) async fn evaluate_and_notify(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<Delivery>, strata_state::Error> {
    if project.alerts.is_empty() {
        return Ok(vec![]);
    }
    let health = monitor::evaluate(state, project, graph, now).await?;
    let channels = Channels::new(project.smtp.clone(), &project.root);
    let deliveries = monitor::reconcile(state, project, graph, &health, now, &channels).await?;
    for d in &deliveries {
        let a = &d.alert;
        let what = match (d.sent, d.silenced, &d.error) {
            (true, _, _) => "sent",
            (_, true, _) => "silenced",
            _ => "NOT SENT",
        };
        println!(
            "alert {} [{}{}] {} — {} ({what}{})",
            a.rule,
            a.status,
            if a.repeat { ", repeated" } else { "" },
            a.kind,
            a.summary,
            d.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(deliveries)
}

/// `strata alerts` (list), `silence`, `unsilence`, `check`.
pub(crate) async fn alerts(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
    cmd: crate::AlertsCommand,
) -> Result<(), Failure> {
    match cmd {
        crate::AlertsCommand::List { limit, format } => {
            let now = rfc3339(Utc::now());
            let silences = state.active_silences(&now).await.map_err(input)?;
            let incidents = state.incidents(limit).await.map_err(input)?;
            if format == Format::Json {
                for i in &incidents {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": i.id, "rule": i.rule, "kind": i.kind, "subject": i.subject,
                            "status": i.status, "summary": i.summary, "opened_at": i.opened_at,
                            "last_sent_at": i.last_sent_at, "sends": i.sends, "resolved_at": i.resolved_at,
                            "last_error": i.last_error,
                        })
                    );
                }
                return Ok(());
            }
            let mut rules = table(&["rule", "on", "channels", "repeat", "silenced until"]);
            for r in project.alerts.values() {
                let mut ch = vec![];
                if r.webhook.is_some() {
                    ch.push("webhook");
                }
                if !r.email.is_empty() {
                    ch.push("email");
                }
                if r.command.is_some() {
                    ch.push("command");
                }
                rules.add_row(vec![
                    r.name.clone(),
                    r.on.iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    ch.join(", "),
                    monitor::human_seconds(r.repeat_after_seconds),
                    silences
                        .iter()
                        .filter(|s| s.rule == r.name)
                        .map(|s| s.until.clone())
                        .max()
                        .unwrap_or_default(),
                ]);
            }
            if project.alerts.is_empty() {
                println!("no alert rules (add [alerts.NAME] to strata.toml; see README)");
            } else {
                println!("{rules}");
            }
            if incidents.is_empty() {
                println!("no incidents");
                return Ok(());
            }
            let mut t = table(&[
                "status", "rule", "kind", "subject", "opened", "sent", "summary",
            ]);
            for i in &incidents {
                t.add_row(vec![
                    comfy_table::Cell::new(&i.status).fg(match i.status.as_str() {
                        "firing" => comfy_table::Color::Red,
                        "resolved" => comfy_table::Color::Green,
                        _ => comfy_table::Color::Yellow,
                    }),
                    comfy_table::Cell::new(&i.rule),
                    comfy_table::Cell::new(&i.kind),
                    comfy_table::Cell::new(&i.subject),
                    comfy_table::Cell::new(&i.opened_at),
                    right(i.sends),
                    comfy_table::Cell::new(short(&i.summary, 80)),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        crate::AlertsCommand::Silence {
            rule,
            r#for,
            reason,
        } => {
            if !project.alerts.contains_key(&rule) {
                return Err(unknown_rule(project, &rule));
            }
            let secs = strata_project::check::parse_duration(&r#for)
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    input(format!(
                        "--for `{for_}`: write a number and a unit: 30m, 2h, 1d",
                        for_ = r#for
                    ))
                })?;
            let now = Utc::now();
            let until = now + chrono::Duration::seconds(secs);
            state
                .add_silence(&Silence {
                    rule: rule.clone(),
                    created_at: rfc3339(now),
                    until: rfc3339(until),
                    reason,
                })
                .await
                .map_err(input)?;
            println!("silenced alert `{rule}` until {}", rfc3339(until));
            Ok(())
        }
        crate::AlertsCommand::Unsilence { rule } => {
            if !project.alerts.contains_key(&rule) {
                return Err(unknown_rule(project, &rule));
            }
            let n = state
                .end_silences(&rule, &rfc3339(Utc::now()))
                .await
                .map_err(input)?;
            println!(
                "{}",
                if n == 0 {
                    format!("alert `{rule}` was not silenced")
                } else {
                    format!("alert `{rule}` is no longer silenced")
                }
            );
            Ok(())
        }
        crate::AlertsCommand::Check { at } => {
            let now = match at {
                Some(t) => crate::parse_time(&t).map_err(input)?,
                None => Utc::now(),
            };
            if project.alerts.is_empty() {
                println!("no alert rules (add [alerts.NAME] to strata.toml; see README)");
                return Ok(());
            }
            let d = evaluate_and_notify(project, graph, state, now)
                .await
                .map_err(input)?;
            if d.is_empty() {
                println!("{}: nothing to send", rfc3339(now));
            }
            if d.iter().any(|d| d.error.is_some()) {
                return Err(Failure::Failed);
            }
            Ok(())
        }
    }
}

fn unknown_rule(project: &Project, rule: &str) -> Failure {
    let help = strata_project::error::did_you_mean(rule, project.alerts.keys().map(String::as_str))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    input(format!("no alert rule `{rule}` in strata.toml{help}"))
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// `strata runs --costs`: models ranked by the CPU and wall time their tasks
/// used since `since`.
pub(crate) async fn costs(
    state: &StateStore,
    since: DateTime<Utc>,
    format: Format,
) -> Result<(), Failure> {
    #[derive(Default)]
    struct Cost {
        tasks: i64,
        failed: i64,
        wall_ms: i64,
        cpu_ms: i64,
        rows: i64,
        bytes_read: i64,
        bytes_written: i64,
    }
    let tasks = state.tasks_since(&rfc3339(since)).await.map_err(input)?;
    let mut by: BTreeMap<String, Cost> = BTreeMap::new();
    for t in &tasks {
        if t.status == "upstream_failed" {
            continue;
        }
        let c = by.entry(t.model.clone()).or_default();
        c.tasks += 1;
        c.failed += i64::from(t.status == "failed");
        c.wall_ms += t.duration().map(|d| d.num_milliseconds()).unwrap_or(0);
        c.cpu_ms += t.cpu_ms;
        c.rows += t.rows_written;
        c.bytes_read += t.bytes_read;
        c.bytes_written += t.bytes_written;
    }
    let mut rows: Vec<(String, Cost)> = by.into_iter().collect();
    rows.sort_by_key(|(m, c)| {
        (
            std::cmp::Reverse(c.cpu_ms),
            std::cmp::Reverse(c.wall_ms),
            m.clone(),
        )
    });
    let total_cpu: i64 = rows.iter().map(|(_, c)| c.cpu_ms).sum::<i64>().max(1);
    if format == Format::Json {
        for (m, c) in &rows {
            println!(
                "{}",
                serde_json::json!({"model": m, "tasks": c.tasks, "failed": c.failed,
                    "wall_seconds": c.wall_ms as f64 / 1000.0, "cpu_seconds": c.cpu_ms as f64 / 1000.0,
                    "rows_written": c.rows, "bytes_read": c.bytes_read, "bytes_written": c.bytes_written})
            );
        }
        return Ok(());
    }
    if rows.is_empty() {
        println!("no tasks since {}", rfc3339(since));
        return Ok(());
    }
    let mut t = table(&[
        "#",
        "model",
        "tasks",
        "failed",
        "cpu s",
        "share",
        "wall s",
        "rows written",
        "read",
        "written",
    ]);
    for (i, (m, c)) in rows.iter().enumerate() {
        t.add_row(vec![
            right(i + 1),
            comfy_table::Cell::new(m),
            right(c.tasks),
            right(c.failed),
            right(format!("{:.2}", c.cpu_ms as f64 / 1000.0)),
            right(format!(
                "{:.1}%",
                100.0 * c.cpu_ms as f64 / total_cpu as f64
            )),
            right(format!("{:.2}", c.wall_ms as f64 / 1000.0)),
            right(c.rows),
            right(bytes(c.bytes_read)),
            right(bytes(c.bytes_written)),
        ]);
    }
    println!("{t}");
    println!(
        "{} tasks since {}; ranked by CPU time (tasks running at once share the process's CPU time evenly)",
        tasks.len(),
        rfc3339(since)
    );
    Ok(())
}

/// `1536` → `1.5 KiB`.
pub(crate) fn bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
