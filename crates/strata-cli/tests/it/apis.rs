//! API sources against a local HTTP server started by the test: page,
//! offset, cursor and Link-header pagination, headers from the environment,
//! retries on 429 and 5xx, records at a JSON pointer, accounting per page.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::support::TestProject;

/// Requests seen, by path and query.
type Log = Arc<Mutex<Vec<String>>>;

/// Serves the test API on 127.0.0.1 (a free port) until the process ends.
fn serve() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let log: Log = Arc::default();
    let seen = log.clone();
    let base_for = base.clone();
    std::thread::spawn(move || {
        let mut hits: BTreeMap<String, usize> = BTreeMap::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let target = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                    auth = v.trim().to_string();
                }
            }
            seen.lock().expect("log").push(target.clone());
            let n = {
                let c = hits.entry(target.clone()).or_default();
                *c += 1;
                *c
            };
            let (status, extra, body) = respond(&base_for, &target, &auth, n);
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                body.len()
            );
        }
    });
    (base, log)
}

fn respond(base: &str, target: &str, auth: &str, hit: usize) -> (&'static str, String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let rec = |id: i64| {
        format!(
            "{{\"id\": {id}, \"name\": \"n{id}\", \"price\": {}.5}}",
            id * 10
        )
    };
    let ok = |body: String| ("200 OK", String::new(), body);
    match path {
        "/page" => {
            if auth != "bearer sekrit" {
                return (
                    "401 Unauthorized",
                    String::new(),
                    "{\"error\":\"no token\"}".into(),
                );
            }
            let page = num("page");
            if page == 2 && hit == 1 {
                return (
                    "429 Too Many Requests",
                    "retry-after: 0\r\n".into(),
                    "{}".into(),
                );
            }
            let ids: Vec<i64> = match page {
                1 => vec![1, 2],
                2 => vec![3, 4],
                3 => vec![5],
                _ => vec![],
            };
            let items: Vec<String> = ids.into_iter().map(rec).collect();
            ok(format!(
                "{{\"data\": {{\"items\": [{}]}}}}",
                items.join(",")
            ))
        }
        "/offset" => {
            let (off, lim) = (num("offset"), num("limit"));
            let items: Vec<String> = (off + 1..=(off + lim).min(5)).map(rec).collect();
            ok(format!("[{}]", items.join(",")))
        }
        "/cursor" => {
            let (items, next) = match q.get("after").copied() {
                None => (vec![rec(1), rec(2)], "\"c2\"".to_string()),
                Some("c2") => (vec![rec(3)], "\"c3\"".to_string()),
                _ => (vec![rec(4)], "null".to_string()),
            };
            ok(format!(
                "{{\"results\": [{}], \"next\": {next}}}",
                items.join(",")
            ))
        }
        "/link" => {
            let p = num("p").max(1);
            let extra = if p < 3 {
                format!("link: <{base}/link?p={}>; rel=\"next\"\r\n", p + 1)
            } else {
                String::new()
            };
            ("200 OK", extra, format!("[{}]", rec(p)))
        }
        "/flaky" => {
            if hit <= 2 {
                ("503 Service Unavailable", String::new(), "{}".into())
            } else {
                ok(format!(
                    "[{}, {{\"id\": \"seven\", \"name\": \"bad\", \"price\": 1}}]",
                    rec(1)
                ))
            }
        }
        _ => ("404 Not Found", String::new(), "{}".into()),
    }
}

fn project(sources: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!("[project]\nname = \"api\"\n{sources}"),
    );
    p
}

#[test]
fn page_pagination_with_a_token_from_the_environment_and_a_429() {
    let (base, log) = serve();
    let p = project(&format!(
        "[sources.items]\nformat = \"http\"\nurl = \"{base}/page\"\nheaders = {{ Authorization = \"Bearer ${{ITEMS_TOKEN}}\" }}\nrecords = \"/data/items\"\npagination = {{ type = \"page\", param = \"page\", size_param = \"per_page\", size = 2 }}\nretry_delay = \"1s\"\n"
    ));
    let env = [("ITEMS_TOKEN", "sekrit")];
    p.ok_env(&["run"], &env);
    let sql = |q: &str| p.ok_env(&["sql", "--format", "csv", q], &env);
    assert_eq!(
        sql("select id, name, price from bronze.items order by id"),
        "id,name,price\n1,n1,10.5\n2,n2,20.5\n3,n3,30.5\n4,n4,40.5\n5,n5,50.5\n"
    );
    let seen = log.lock().expect("log").clone();
    assert_eq!(
        seen,
        vec![
            "/page?page=1&per_page=2",
            "/page?page=2&per_page=2",
            "/page?page=2&per_page=2",
            "/page?page=3&per_page=2"
        ],
        "page 2 was retried after its 429; page 3 (short) was the last"
    );
    // One account per page, named by its URL.
    assert_eq!(
        sql("select count(distinct _source) as n from bronze.items"),
        "n\n3\n"
    );
}

#[test]
fn offset_cursor_and_link_pagination() {
    let (base, _) = serve();
    let p = project(&format!(
        "[sources.off]\nformat = \"http\"\nurl = \"{base}/offset\"\npagination = {{ type = \"offset\", limit = 2 }}\n\n[sources.cur]\nformat = \"http\"\nurl = \"{base}/cursor\"\nrecords = \"/results\"\npagination = {{ type = \"cursor\", param = \"after\", next = \"/next\" }}\n\n[sources.lnk]\nformat = \"http\"\nurl = \"{base}/link\"\npagination = {{ type = \"link\" }}\nrate_limit = 20\n"
    ));
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id from bronze.off order by id"),
        vec!["id", "1", "2", "3", "4", "5"]
    );
    assert_eq!(
        p.sql("select id from bronze.cur order by id"),
        vec!["id", "1", "2", "3", "4"]
    );
    assert_eq!(
        p.sql("select id from bronze.lnk order by id"),
        vec!["id", "1", "2", "3"]
    );
}

#[test]
fn server_errors_are_retried_and_bad_records_quarantined_with_their_page() {
    let (base, log) = serve();
    let p = project(&format!(
        "[sources.fl]\nformat = \"http\"\nurl = \"{base}/flaky\"\nretries = 3\nretry_delay = \"1s\"\ncolumns = {{ id = \"bigint\", name = \"string\", price = \"double\" }}\n"
    ));
    p.ok(&["run"]);
    assert_eq!(log.lock().expect("log").len(), 3, "two 503s, then the page");
    assert_eq!(p.sql("select id from bronze.fl"), vec!["id", "1"]);
    let q = p.sql("select _error, _line, _source from bronze.fl_quarantine");
    assert!(
        q[1].contains("`seven` is not a valid bigint")
            && q[1].contains(",2,")
            && q[1].contains("/flaky"),
        "{q:?}"
    );

    // Without retries left, the failure names the URL and the status.
    let p = project(&format!(
        "[sources.fl]\nformat = \"http\"\nurl = \"{base}/missing\"\n"
    ));
    let out = p.strata(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/missing answered HTTP 404 Not Found"),
        "{err}"
    );
}
