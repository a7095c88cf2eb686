//! Load generator for `bench/serve.sh`: N concurrent clients run a mix of
//! point and aggregate queries on the shop example's gold tables for a while,
//! first through `strata serve`'s Postgres-wire endpoint (tokio-postgres,
//! extended protocol with bind parameters, one connection per client), then
//! the same mix on bare DataFusion in this process over the same Delta tables
//! (the floor). Prints throughput and p50/p99 latency of each, and one
//! summary line.
//!
//! ```text
//! cargo run --release -p strata-server --example sql_load -- \
//!     --port 5433 --user bench --password secret --lake PROJECT/lake --clients 32 --seconds 30
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;

struct Args {
    port: u16,
    user: String,
    password: String,
    lake: String,
    clients: usize,
    seconds: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        port: 5433,
        user: "bench".into(),
        password: String::new(),
        lake: String::new(),
        clients: 32,
        seconds: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--port" => a.port = v.parse().map_err(|e| format!("--port: {e}"))?,
            "--user" => a.user = v,
            "--password" => a.password = v,
            "--lake" => a.lake = v,
            "--clients" => a.clients = v.parse().map_err(|e| format!("--clients: {e}"))?,
            "--seconds" => a.seconds = v.parse().map_err(|e| format!("--seconds: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.lake.is_empty() {
        return Err("--lake DIR is required".into());
    }
    Ok(a)
}

/// The mix: (SQL with $1, kind). Client `i`'s `n`-th query picks
/// `MIX[n % len]` and a parameter from `n`.
const MIX: &[(&str, &str)] = &[
    (
        "select customer_id, name, lifetime_value from gold.customer_lifetime_value where customer_id = $1",
        "point",
    ),
    (
        "select region, sum(revenue) as revenue, sum(orders) as orders from gold.daily_revenue where orders >= $1 group by region order by region",
        "aggregate",
    ),
    (
        "select customer_id, orders from gold.customer_lifetime_value where customer_id = $1",
        "point",
    ),
    (
        "select region, count(*) as customers, avg(lifetime_value) as avg_value from gold.customer_lifetime_value where orders >= $1 group by region order by region",
        "aggregate",
    ),
];

/// How far each client's query counter moves per query (so clients interleave).
const STEP: u64 = 7;

fn param(n: u64) -> i64 {
    // Customer ids of the example start at 1; spread over the first 2,000.
    ((n.wrapping_mul(2_654_435_761)) % 2000 + 1) as i64
}

fn inline(sql: &str, p: i64) -> String {
    sql.replace("$1", &p.to_string())
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

fn report(name: &str, mut o: Outcome, seconds: f64) -> (f64, f64, f64) {
    o.latencies.sort();
    let n = o.latencies.len();
    let pct = |p: f64| {
        if n == 0 {
            0.0
        } else {
            o.latencies[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1000.0
        }
    };
    let qps = n as f64 / seconds;
    println!(
        "{name}: {n} queries in {seconds:.1} s = {qps:.0} q/s, p50 {:.2} ms, p99 {:.2} ms, errors {}{}",
        pct(0.50),
        pct(0.99),
        o.errors,
        o.first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    (qps, pct(0.50), pct(0.99))
}

async fn strata_load(a: &Args) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..a.clients {
        let conn = format!(
            "host=127.0.0.1 port={} user={} password={} dbname=bench",
            a.port, a.user, a.password
        );
        clients.spawn(async move {
            let mut out = Outcome {
                latencies: vec![],
                errors: 0,
                first_error: None,
            };
            let (client, connection) =
                match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                    Ok(c) => c,
                    Err(e) => {
                        out.errors += 1;
                        out.first_error = Some(e.to_string());
                        return out;
                    }
                };
            let mut bg = tokio::task::JoinSet::new();
            bg.spawn(connection);
            let mut statements = vec![];
            for (sql, _) in MIX {
                match client.prepare(sql).await {
                    Ok(s) => statements.push(s),
                    Err(e) => {
                        out.errors += 1;
                        out.first_error = Some(format!("{sql}: {e}"));
                        return out;
                    }
                }
            }
            let mut n = i as u64;
            while Instant::now() < deadline {
                let st = &statements[(n as usize) % statements.len()];
                let t = Instant::now();
                match client.query(st, &[&param(n)]).await {
                    Ok(_) => out.latencies.push(t.elapsed()),
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e.to_string());
                    }
                }
                n += STEP;
            }
            out
        });
    }
    merge(clients).await
}

async fn merge(mut set: tokio::task::JoinSet<Outcome>) -> Outcome {
    let mut all = Outcome {
        latencies: vec![],
        errors: 0,
        first_error: None,
    };
    while let Some(r) = set.join_next().await {
        match r {
            Ok(o) => {
                all.latencies.extend(o.latencies);
                all.errors += o.errors;
                if all.first_error.is_none() {
                    all.first_error = o.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert(e.to_string());
            }
        }
    }
    all
}

async fn floor_context(lake: &str) -> Result<SessionContext, String> {
    let ctx = SessionContext::new();
    ctx.sql("create schema gold")
        .await
        .map_err(|e| e.to_string())?;
    for t in ["customer_lifetime_value", "daily_revenue"] {
        let path = std::path::Path::new(lake).join("gold").join(t);
        let url = deltalake::ensure_table_uri(path.to_string_lossy().as_ref())
            .map_err(|e| e.to_string())?;
        let mut table = deltalake::DeltaTable::try_from_url(url)
            .await
            .map_err(|e| e.to_string())?;
        table.load().await.map_err(|e| e.to_string())?;
        let provider = table.table_provider().await.map_err(|e| e.to_string())?;
        ctx.register_table(format!("gold.{t}"), provider)
            .map_err(|e| e.to_string())?;
    }
    Ok(ctx)
}

async fn floor_load(a: &Args, ctx: SessionContext) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let ctx = Arc::new(ctx);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..a.clients {
        let ctx = ctx.clone();
        clients.spawn(async move {
            let mut out = Outcome {
                latencies: vec![],
                errors: 0,
                first_error: None,
            };
            let mut n = i as u64;
            while Instant::now() < deadline {
                let (sql, _) = MIX[(n as usize) % MIX.len()];
                let t = Instant::now();
                let r = match ctx.sql(&inline(sql, param(n))).await {
                    Ok(df) => df.collect().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => out.latencies.push(t.elapsed()),
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e.to_string());
                    }
                }
                n += STEP;
            }
            out
        });
    }
    merge(clients).await
}

fn main() -> Result<(), String> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let t = Instant::now();
        let strata = strata_load(&a).await;
        let strata_s = t.elapsed().as_secs_f64();
        let strata_errors = strata.errors;
        let (sq, s50, s99) = report("strata (postgres wire)", strata, strata_s);
        let ctx = floor_context(&a.lake).await?;
        let t = Instant::now();
        let floor = floor_load(&a, ctx).await;
        let floor_s = t.elapsed().as_secs_f64();
        let (fq, f50, f99) = report("floor (DataFusion in-process)", floor, floor_s);
        println!(
            "serve: clients={} seconds={} strata_qps={sq:.0} strata_p50_ms={s50:.2} strata_p99_ms={s99:.2} floor_qps={fq:.0} floor_p50_ms={f50:.2} floor_p99_ms={f99:.2} ratio={:.2}",
            a.clients,
            a.seconds,
            if sq > 0.0 { fq / sq } else { f64::INFINITY }
        );
        if strata_errors > 0 {
            return Err(format!("{strata_errors} queries failed through strata serve"));
        }
        Ok(())
    })
}
