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
        t.add_row(vec![
            Cell::new(name),
            Cell::new(in_last),
            Cell::new(built),
            Cell::new(version.map(|v| v.to_string()).unwrap_or_else(|| "-".into())),
            Cell::new(checks),
        ]);
    }
    println!("{t}");
    print_intervals(project, state).await
}

/// Gaps shown per partitioned model; more are summarised.
const GAPS_SHOWN: usize = 10;

/// Per partitioned model: its intervals done, late, failed and missing, and the gaps.
async fn print_intervals(project: &Project, state: &StateStore) -> Result<(), strata_state::Error> {
    for m in project.models.values() {
        let Some(p) = &m.config.partitioning else {
            continue;
        };
        let st = strata_runtime::interval_status(state, &m.name, p.grain).await?;
        let Some((first, last)) = st.span else {
            println!(
                "\nintervals of {} ({}): none built yet — `strata backfill --start D --end D --select {}`",
                m.name,
                p.grain.as_str(),
                m.name
            );
            continue;
        };
        println!(
            "\nintervals of {} ({}) from {} to {}: {} done, {} late, {} failed, {} missing",
            m.name,
            p.grain.as_str(),
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
        println!(
            "fill them: strata backfill --start {} --end {} --select {}",
            strata_runtime::rfc3339(first),
            strata_runtime::rfc3339(last),
            m.name
        );
    }
    Ok(())
}
