//! `strata docs --out DIR`: the catalog as a static site (one `index.html`
//! that works from the file system, plus `catalog.json`).

use std::fmt::Write as _;

use strata_engine::catalog::{Catalog, TableDoc};

/// Writes `index.html` and `catalog.json` into `out`.
pub fn write_site(catalog: &Catalog, out: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(catalog).map_err(|e| e.to_string())?;
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text)
            .map_err(|e| format!("cannot write {}: {e}", out.join(name).display()))
    };
    write("catalog.json", &json)?;
    write("index.html", &render(catalog))
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn anchor(table: &str) -> String {
    format!("t-{}", table.replace('.', "-"))
}

fn status_badge(s: Option<&str>) -> String {
    match s {
        Some("pass") => "<span class=b-pass>pass</span>".into(),
        Some("warn") => "<span class=b-warn>warn</span>".into(),
        Some("fail") => "<span class=b-fail>fail</span>".into(),
        Some(other) => esc(other),
        None => "<span class=muted>not run</span>".into(),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:16px 32px}header h1{margin:0;font-size:22px}
main{padding:16px 32px;max-width:1200px}section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 8px}h3{font-size:16px;margin:0 0 4px}table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}th{color:#5b6475;font-weight:600}
.muted{color:#8a93a5}.layer{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;color:#fff}
.bronze{background:#a0642c}.silver{background:#7b8794}.gold{background:#c9a227}
.b-pass{color:#1a7f37;font-weight:600}.b-warn{color:#b08800;font-weight:600}.b-fail{color:#cf222e;font-weight:600}
pre{background:#f6f8fa;padding:8px;border-radius:6px;overflow:auto;font-size:13px}a{color:#0b5cad;text-decoration:none}
svg text{font-size:12px;font-family:system-ui,sans-serif}";

fn render(c: &Catalog) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>{p} — data catalog</title><style>{STYLE}</style></head><body>\
         <header><h1>{p} — data catalog</h1><div class=muted>generated {g} · {n} tables · {m} data products</div></header><main>",
        p = esc(&c.project),
        g = esc(&c.generated_at),
        n = c.tables.len(),
        m = c.products.len()
    );
    // Data products
    h.push_str("<section><h2>Data products</h2>");
    if c.products.is_empty() {
        h.push_str("<p class=muted>No data products declared (<code>[products.NAME]</code> in strata.toml).</p>");
    } else {
        h.push_str("<table><tr><th>product</th><th>description</th><th>owner</th><th>consumers</th><th>tables</th><th>freshness SLA</th><th>within SLA</th><th>access</th></tr>");
        for p in &c.products {
            let tables: Vec<String> = p
                .models
                .iter()
                .map(|m| format!("<a href=\"#{}\">{}</a>", anchor(m), esc(m)))
                .collect();
            let _ = write!(
                h,
                "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.name),
                esc(p.description.as_deref().unwrap_or("")),
                esc(p.owner.as_deref().unwrap_or("")),
                esc(&p.consumers.join(", ")),
                tables.join(", "),
                esc(p.freshness.as_deref().unwrap_or("none")),
                match p.fresh {
                    Some(true) => "<span class=b-pass>yes</span>",
                    Some(false) => "<span class=b-fail>no</span>",
                    None => "<span class=muted>—</span>",
                },
                esc(&p.access.join(", "))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
    // Lineage
    h.push_str("<section><h2>Lineage</h2>");
    h.push_str(&lineage_svg(&c.tables));
    h.push_str("</section>");
    // Table index
    h.push_str("<section><h2>Tables</h2><table><tr><th>table</th><th>layer</th><th>kind</th><th>description</th><th>owner</th><th>checks</th><th>last built</th></tr>");
    for t in &c.tables {
        let fails = t
            .checks
            .iter()
            .filter(|k| k.last_status.as_deref() == Some("fail"))
            .count();
        let warns = t
            .checks
            .iter()
            .filter(|k| k.last_status.as_deref() == Some("warn"))
            .count();
        let checks = if t.checks.is_empty() {
            "<span class=muted>none</span>".to_string()
        } else if fails > 0 {
            format!(
                "<span class=b-fail>{fails} failing</span> of {}",
                t.checks.len()
            )
        } else if warns > 0 {
            format!(
                "<span class=b-warn>{warns} warning</span> of {}",
                t.checks.len()
            )
        } else {
            format!("{}", t.checks.len())
        };
        let _ = write!(
            h,
            "<tr><td><a href=\"#{}\">{}</a></td><td><span class=\"layer {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{checks}</td><td>{}</td></tr>",
            anchor(&t.name),
            esc(&t.name),
            esc(&t.layer),
            esc(&t.layer),
            esc(&t.kind),
            esc(t.description.as_deref().unwrap_or("")),
            esc(t.owner.as_deref().unwrap_or("")),
            esc(t.last_built.as_deref().unwrap_or("never"))
        );
    }
    h.push_str("</table></section>");
    for t in &c.tables {
        h.push_str(&table_section(t));
    }
    h.push_str("</main></body></html>\n");
    h
}

fn table_section(t: &TableDoc) -> String {
    let mut h = String::new();
    let link = |n: &String| format!("<a href=\"#{}\">{}</a>", anchor(n), esc(n));
    let _ = write!(
        h,
        "<section id=\"{}\"><h3>{} <span class=\"layer {}\">{}</span></h3><p>{}</p><p class=muted>{} · defined in {} · owner {} · version {} · last built {}{}{}{}</p>",
        anchor(&t.name),
        esc(&t.name),
        esc(&t.layer),
        esc(&t.layer),
        esc(t.description.as_deref().unwrap_or("No description.")),
        esc(&t.kind),
        esc(&t.defined_in),
        esc(t.owner.as_deref().unwrap_or("—")),
        t.version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "—".into()),
        esc(t.last_built.as_deref().unwrap_or("never")),
        t.partitioning
            .as_ref()
            .map(|p| format!(" · partitioned by {}", esc(p)))
            .unwrap_or_default(),
        if t.tags.is_empty() {
            String::new()
        } else {
            format!(" · tags {}", esc(&t.tags.join(", ")))
        },
        if t.products.is_empty() {
            String::new()
        } else {
            format!(" · in products {}", esc(&t.products.join(", ")))
        }
    );
    let _ = write!(
        h,
        "<p>upstream: {} · downstream: {}</p>",
        if t.upstream.is_empty() {
            "—".into()
        } else {
            t.upstream.iter().map(link).collect::<Vec<_>>().join(", ")
        },
        if t.downstream.is_empty() {
            "—".into()
        } else {
            t.downstream.iter().map(link).collect::<Vec<_>>().join(", ")
        }
    );
    if !t.columns.is_empty() {
        h.push_str(
            "<table><tr><th>column</th><th>type</th><th>nullable</th><th>description</th><th>derived from</th></tr>",
        );
        for c in &t.columns {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.name),
                esc(&c.ty),
                if c.nullable { "yes" } else { "no" },
                esc(c.description.as_deref().unwrap_or("")),
                c.derived_from
                    .iter()
                    .map(|d| {
                        let (col, how) = d.split_once(' ').unwrap_or((d, ""));
                        let table = col.rsplit_once('.').map(|(t, _)| t).unwrap_or(col);
                        format!(
                            "<a href=\"#{}\"><code>{}</code></a> {}",
                            anchor(table),
                            esc(col),
                            esc(how)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        h.push_str("</table>");
    }
    if !t.checks.is_empty() {
        h.push_str("<h3 style=\"margin-top:12px\">Checks</h3><table><tr><th>check</th><th>on failure</th><th>last result</th><th>failing rows</th><th>checked</th></tr>");
        for k in &t.checks {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&k.name),
                esc(&k.on_failure),
                status_badge(k.last_status.as_deref()),
                k.last_failing.map(|n| n.to_string()).unwrap_or_default(),
                esc(k.last_checked.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    if !t.sql.is_empty() {
        let _ = write!(
            h,
            "<details><summary>SQL</summary><pre>{}</pre></details>",
            esc(&t.sql)
        );
    }
    h.push_str("</section>");
    h
}

/// The table-level lineage as an SVG: one column per depth in the DAG (so
/// every edge runs left to right), each table outlined in its layer's colour.
fn lineage_svg(tables: &[TableDoc]) -> String {
    const W: i64 = 220;
    const GAP_X: i64 = 70;
    const H: i64 = 26;
    const GAP_Y: i64 = 10;
    // Tables come upstream first, so each depth is known when it is needed.
    let mut depth: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in tables {
        let d = t
            .upstream
            .iter()
            .filter_map(|u| depth.get(u.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(&t.name, d);
    }
    let columns = depth.values().max().map(|d| d + 1).unwrap_or(1);
    let mut rows = vec![0i64; columns];
    let mut pos: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for t in tables {
        let col = depth.get(t.name.as_str()).copied().unwrap_or(0);
        let x = 10 + col as i64 * (W + GAP_X);
        let y = 10 + rows[col] * (H + GAP_Y);
        rows[col] += 1;
        pos.insert(&t.name, (x, y));
    }
    let height = 20 + rows.iter().max().copied().unwrap_or(0) * (H + GAP_Y);
    let width = 20 + columns as i64 * (W + GAP_X);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for t in tables {
        let Some(&(x2, y2)) = pos.get(t.name.as_str()) else {
            continue;
        };
        for u in &t.upstream {
            let Some(&(x1, y1)) = pos.get(u.as_str()) else {
                continue;
            };
            let (sx, sy, ex, ey) = (x1 + W, y1 + H / 2, x2, y2 + H / 2);
            let bend = ((ex - sx) / 2).max(20);
            let _ = write!(
                s,
                "<path d=\"M{sx},{sy} C{},{sy} {},{ey} {ex},{ey}\" fill=\"none\" stroke=\"#9aa4b5\" stroke-width=\"1.2\"/>",
                sx + bend,
                ex - bend
            );
        }
    }
    for t in tables {
        let Some(&(x, y)) = pos.get(t.name.as_str()) else {
            continue;
        };
        let failing = t
            .checks
            .iter()
            .any(|k| k.last_status.as_deref() == Some("fail"));
        let stroke = match (failing, t.layer.as_str()) {
            (true, _) => "#cf222e",
            (_, "bronze") => "#a0642c",
            (_, "gold") => "#c9a227",
            _ => "#7b8794",
        };
        let _ = write!(
            s,
            "<a href=\"#{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"5\" fill=\"#fff\" stroke=\"{stroke}\" stroke-width=\"1.6\"/><text x=\"{}\" y=\"{}\" fill=\"#1d2433\">{}</text></a>",
            anchor(&t.name),
            x + 8,
            y + 17,
            esc(&t.name)
        );
    }
    s.push_str("</svg>");
    s
}
