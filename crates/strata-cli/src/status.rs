//! `strata status`: one screen of health from the state store.

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use strata_graph::{Graph, NodeKind};
use strata_project::Project;
use strata_state::StateStore;

/// Prints the last run and, per table, its last build, version and check results.
pub async fn print(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
) -> Result<(), strata_state::Error> {
    println!("project {} — lake {}", project.name, project.lake);
    let now = chrono::Utc::now();
    let health = strata_runtime::monitor::evaluate(state, project, graph, now).await?;
    print_health(&health, state).await?;
    let last = state.runs(1).await?.into_iter().next();
    let tasks = match &last {
        Some(r) => {
            println!(
                "last run {}: {} (started {}{})",
                r.run_id,
                r.status,
                r.started_at,
                r.ended_at
                    .as_ref()
                    .map(|e| format!(", ended {e}"))
                    .unwrap_or_default()
            );
            state.tasks(&r.run_id).await?
        }
        None => {
            println!("no run yet: `strata run` builds the tables");
            vec![]
        }
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "table",
            "last run",
            "built or loaded",
            "version",
            "freshness",
            "checks (latest)",
        ]);
    for name in graph.order() {
        let Some(node) = graph.node(name) else {
            continue;
        };
        let in_last = tasks
            .iter()
            .find(|t| t.task == *name)
            .map(|t| t.status.clone())
            .unwrap_or_else(|| "-".into());
        let (built, version) = match &node.kind {
            NodeKind::Source(source) => {
                let files = state.files_of(source).await?;
                match files.last() {
                    Some(f) => (
                        format!("{} ({} files)", f.ingested_at, files.len()),
                        f.delta_version,
                    ),
                    None => ("never".into(), None),
                }
            }
            NodeKind::Model => match state.model_state(name).await? {
                Some(m) => (m.built_at, m.delta_version),
                None => ("never".into(), None),
            },
        };
        let history = state.check_history(name).await?;
        let checks = match history.first() {
            None => "-".to_string(),
            Some(latest) => {
                let same_run: Vec<_> = history
                    .iter()
                    .filter(|c| c.run_id == latest.run_id)
                    .collect();
                let failed = same_run.iter().filter(|c| c.status == "fail").count();
                let warned = same_run.iter().filter(|c| c.status == "warn").count();
                let passed = same_run.len() - failed - warned;
                format!("{passed} pass, {warned} warn, {failed} fail")
            }
        };
        let fresh = health.freshness.iter().find(|f| &f.table == name);
        let freshness = match fresh {
            None => Cell::new("-"),
            Some(f) => {
                let lag = f
                    .lag_seconds
                    .map(strata_runtime::monitor::human_seconds)
                    .unwrap_or_else(|| "never loaded".into());
                let text = match f.sla_seconds {
                    Some(s) => format!("{lag} (SLA {})", strata_runtime::monitor::human_seconds(s)),
                    None => lag,
                };
                if f.stale() {
                    Cell::new(format!("{text} STALE")).fg(comfy_table::Color::Red)
                } else {
                    Cell::new(text)
                }
            }
        };
        t.add_row(vec![
            Cell::new(name),
            Cell::new(in_last),
            Cell::new(built),
            Cell::new(version.map(|v| v.to_string()).unwrap_or_else(|| "-".into())),
            freshness,
            Cell::new(checks),
        ]);
    }
    println!("{t}");
    print_intervals(project, state).await?;
    print_schema_changes(project, state).await
}

/// The health summary: what is wrong now, running and recently failed runs,
/// and firing alerts.
async fn print_health(
    health: &strata_runtime::monitor::Health,
    state: &StateStore,
) -> Result<(), strata_state::Error> {
    use strata_project::AlertOn;
    let of = |k: AlertOn| -> Vec<&strata_runtime::monitor::Condition> {
        health.conditions.iter().filter(|c| c.kind == k).collect()
    };
    let sections = [
        (AlertOn::TaskFailed, "failed tasks"),
        (AlertOn::CheckFailed, "failing checks"),
        (AlertOn::SlaMissed, "stale tables"),
        (AlertOn::Anomaly, "anomalies"),
    ];
    let problems: usize = sections.iter().map(|(k, _)| of(*k).len()).sum();
    let runs = state.runs(50).await?;
    let running: Vec<_> = runs.iter().filter(|r| r.status == "running").collect();
    let failed_runs: Vec<_> = runs
        .iter()
        .filter(|r| r.status == "failed" || r.status == "interrupted")
        .take(3)
        .collect();
    let firing = state.open_incidents().await?;
    if problems == 0 {
        println!("health: ok — no failed tasks, failing checks, stale tables or anomalies");
    } else {
        println!(
            "health: {problems} problem{}",
            if problems == 1 { "" } else { "s" }
        );
    }
    for (kind, title) in sections {
        let list = of(kind);
        if list.is_empty() {
            continue;
        }
        println!("  {title}:");
        for c in list.iter().take(10) {
            let mark = if c.severity == "error" { "✗" } else { "!" };
            println!("    {mark} {}", c.summary);
        }
        if list.len() > 10 {
            println!("    … and {} more", list.len() - 10);
        }
    }
    for r in &running {
        println!(
            "  running: run {} since {} ({})",
            r.run_id, r.started_at, r.trigger
        );
    }
    if !failed_runs.is_empty() {
        println!("  recent failed runs:");
        for r in &failed_runs {
            println!(
                "    ✗ {} {} at {} (`strata runs {}`; `strata run --resume {}`)",
                r.run_id, r.status, r.started_at, r.run_id, r.run_id
            );
        }
    }
    if firing.is_empty() {
        println!("  alerts: none firing");
    } else {
        println!("  alerts firing ({}):", firing.len());
        for i in firing.iter().take(10) {
            println!(
                "    {} · {} · {} (since {})",
                i.rule, i.kind, i.subject, i.opened_at
            );
        }
    }
    println!();
    Ok(())
}

/// Schema changes shown per source.
const CHANGES_SHOWN: usize = 5;

/// The latest schema changes of each source.
async fn print_schema_changes(
    project: &Project,
    state: &StateStore,
) -> Result<(), strata_state::Error> {
    for s in project.sources.values() {
        let events = state.schema_events(&s.name).await?;
        if events.is_empty() {
            continue;
        }
        println!("\nschema changes of {} (newest first):", s.table());
        for e in events.iter().take(CHANGES_SHOWN) {
            let what = match e.change.as_str() {
                "column_added" => format!("+ {} ({}) added", e.column, e.column_type),
                "column_missing" => format!("- {} missing (read as null)", e.column),
                "column_retyped" => format!("~ {} retyped ({})", e.column, e.column_type),
                other => format!("{other} {}", e.column),
            };
            println!("  {what} — in {} at {} (run {})", e.file, e.at, e.run_id);
        }
        if events.len() > CHANGES_SHOWN {
            println!("  … and {} earlier", events.len() - CHANGES_SHOWN);
        }
    }
    Ok(())
}

/// Gaps shown per partitioned model; more are summarised.
const GAPS_SHOWN: usize = 10;

/// Per partitioned model: its intervals done, late, failed and missing, and the gaps.
async fn print_intervals(project: &Project, state: &StateStore) -> Result<(), strata_state::Error> {
    let tracked: Vec<(String, strata_project::Grain, bool)> = project
        .sources
        .values()
        .filter_map(|s| s.time.as_ref().map(|(_, g)| (s.table(), *g, false)))
        .chain(project.models.values().filter_map(|m| {
            m.config
                .partitioning
                .as_ref()
                .map(|p| (m.name.clone(), p.grain, true))
        }))
        .collect();
    for (name, grain, is_model) in tracked {
        let st = strata_runtime::interval_status(state, &name, grain).await?;
        let Some((first, last)) = st.span else {
            if is_model {
                println!(
                    "\nintervals of {name} ({}): none built yet — `strata backfill --start D --end D --select {name}`",
                    grain.as_str()
                );
            } else {
                println!(
                    "\nintervals of {name} ({}): no data loaded yet",
                    grain.as_str()
                );
            }
            continue;
        };
        println!(
            "\nintervals of {} ({}) from {} to {}: {} done, {} late, {} failed, {} missing",
            name,
            grain.as_str(),
            strata_runtime::rfc3339(first),
            strata_runtime::rfc3339(last),
            st.done,
            st.late,
            st.failed,
            st.missing
        );
        if st.gaps.is_empty() {
            continue;
        }
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec!["gap from", "to", "status", "intervals"]);
        for (a, b, kind, n) in st.gaps.iter().take(GAPS_SHOWN) {
            t.add_row(vec![
                Cell::new(strata_runtime::rfc3339(*a)),
                Cell::new(strata_runtime::rfc3339(*b)),
                Cell::new(kind),
                Cell::new(n),
            ]);
        }
        println!("{t}");
        if st.gaps.len() > GAPS_SHOWN {
            println!("… and {} more gaps", st.gaps.len() - GAPS_SHOWN);
        }
        if is_model {
            println!(
                "fill them: strata backfill --start {} --end {} --select {name}",
                strata_runtime::rfc3339(first),
                strata_runtime::rfc3339(last),
            );
        } else {
            println!(
                "(`missing`: no row of {name} falls in that interval; `late` intervals got rows after their first load)"
            );
        }
    }
    Ok(())
}
