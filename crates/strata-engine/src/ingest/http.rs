//! API sources: records from an HTTP JSON API, page by page (page number,
//! offset, cursor field or `Link` header), with retries and backoff on 429
//! and 5xx responses and an optional rate limit. Each page is accounted for
//! like a file: its URL (without secret query values) is the rows' `_source`.

use std::time::{Duration, Instant};

use serde_json::Value;
use strata_project::{ColumnType, Http, Pagination, Source};

use super::db::Fetched;
use super::infer::{SAMPLE_ROWS, infer_json, normalize_name};
use crate::error::{Error, Result};

/// Reads every page of the source.
pub(crate) async fn fetch(source: &Source, http: &Http) -> Result<Fetched> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
    let mut pages: Vec<(String, Vec<serde_json::Map<String, Value>>)> = vec![];
    let mut url = http.url.clone();
    let mut page_no = match &http.pagination {
        Pagination::Page { start, .. } => *start,
        _ => 0,
    };
    let mut offset = 0i64;
    let mut last_request: Option<Instant> = None;
    loop {
        if pages.len() as u32 >= http.max_pages {
            return Err(Error::User(format!(
                "source `{}`: more than {} pages; raise `max_pages` if that is expected",
                source.name, http.max_pages
            )));
        }
        let request_url = match &http.pagination {
            Pagination::None | Pagination::Link | Pagination::Cursor { .. } => url.clone(),
            Pagination::Page { param, size, .. } => {
                let mut q = vec![(param.clone(), page_no.to_string())];
                if let Some((p, n)) = size
                    && !p.is_empty()
                {
                    q.push((p.clone(), n.to_string()));
                }
                with_query(&url, &q)?
            }
            Pagination::Offset {
                param,
                limit_param,
                limit,
            } => with_query(
                &url,
                &[
                    (param.clone(), offset.to_string()),
                    (limit_param.clone(), limit.to_string()),
                ],
            )?,
        };
        if let (Some(rate), Some(last)) = (http.rate_limit, last_request) {
            let gap = Duration::from_secs_f64(1.0 / rate);
            let since = last.elapsed();
            if since < gap {
                tokio::time::sleep(gap - since).await;
            }
        }
        last_request = Some(Instant::now());
        let (body, next_link) = get(source, http, &client, &request_url).await?;
        let records = records_of(source, http, &body, &request_url)?;
        let n = records.len() as i64;
        pages.push((shown_url(&request_url), records));
        match &http.pagination {
            Pagination::None => break,
            Pagination::Page { size, .. } => {
                let full = size.as_ref().map(|(_, s)| n >= *s).unwrap_or(n > 0);
                if !full || n == 0 {
                    break;
                }
                page_no += 1;
            }
            Pagination::Offset { limit, .. } => {
                if n < *limit {
                    break;
                }
                offset += n;
            }
            Pagination::Cursor { param, next } => match body.pointer(next) {
                Some(Value::String(c)) if !c.is_empty() => {
                    url = with_query(&http.url, &[(param.clone(), c.clone())])?
                }
                Some(Value::Number(c)) => {
                    url = with_query(&http.url, &[(param.clone(), c.to_string())])?
                }
                _ => break,
            },
            Pagination::Link => match next_link {
                Some(next) => url = next,
                None => break,
            },
        }
    }
    Ok(to_rows(pages))
}

/// One GET with retries: 429, 5xx and failed connections are retried with
/// exponential backoff (a `Retry-After` in seconds is honoured); other
/// errors are not. Returns the JSON body and the `Link` header's next URL.
async fn get(
    source: &Source,
    http: &Http,
    client: &reqwest::Client,
    url: &str,
) -> Result<(Value, Option<String>)> {
    let shown = shown_url(url);
    let mut attempt = 0u32;
    loop {
        let mut req = client.get(url).header("accept", "application/json");
        for (k, v) in &http.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let outcome = req.send().await;
        let retry_after = |r: &reqwest::Response| {
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        };
        let (why, wait) = match outcome {
            Ok(r) if r.status().is_success() => {
                let next = r
                    .headers()
                    .get_all("link")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(next_link);
                let text = r.text().await.map_err(|e| {
                    Error::External(format!("source `{}`: reading {shown}: {e}", source.name))
                })?;
                let body = serde_json::from_str::<Value>(&text).map_err(|e| {
                    Error::User(format!(
                        "source `{}`: {shown} did not return JSON ({e}); it began: {}",
                        source.name,
                        text.chars().take(80).collect::<String>()
                    ))
                })?;
                return Ok((body, next));
            }
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                (format!("HTTP {}", r.status()), retry_after(&r))
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(Error::User(format!(
                    "source `{}`: {shown} answered HTTP {status}: {}",
                    source.name,
                    text.chars().take(200).collect::<String>()
                )));
            }
            Err(e) => (format!("{e}"), None),
        };
        if attempt >= http.retries {
            return Err(Error::External(format!(
                "source `{}`: {shown} failed after {} attempts: {why}",
                source.name,
                attempt + 1
            )));
        }
        let backoff =
            Duration::from_millis(http.retry_delay_ms.saturating_mul(1 << attempt.min(16)));
        tracing::warn!(source = %source.name, "{shown}: {why}; retrying");
        tokio::time::sleep(wait.unwrap_or(backoff)).await;
        attempt += 1;
    }
}

/// The records of one page, as objects.
fn records_of(
    source: &Source,
    http: &Http,
    body: &Value,
    url: &str,
) -> Result<Vec<serde_json::Map<String, Value>>> {
    let at = match &http.records {
        Some(p) => body.pointer(p).ok_or_else(|| {
            Error::User(format!(
                "source `{}`: {} has nothing at `records = \"{p}\"`",
                source.name,
                shown_url(url)
            ))
        })?,
        None => body,
    };
    let Value::Array(items) = at else {
        return Err(Error::User(format!(
            "source `{}`: the records of {} are not an array; set `records` to a JSON pointer to them",
            source.name,
            shown_url(url)
        )));
    };
    Ok(items
        .iter()
        .map(|v| match v {
            Value::Object(o) => o.clone(),
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other.clone());
                m
            }
        })
        .collect())
}

/// The records as rows of the union of their keys (normalized, in order of
/// first appearance), each key's type inferred from a sample of its values.
fn to_rows(pages: Vec<(String, Vec<serde_json::Map<String, Value>>)>) -> Fetched {
    let mut names: Vec<String> = vec![];
    let mut samples: Vec<Vec<Value>> = vec![];
    let mut key_index: std::collections::HashMap<String, usize> = Default::default();
    for (_, records) in &pages {
        for r in records {
            for (k, v) in r {
                let n = normalize_name(k);
                let i = *key_index.entry(n.clone()).or_insert_with(|| {
                    names.push(n);
                    samples.push(vec![]);
                    names.len() - 1
                });
                if samples[i].len() < SAMPLE_ROWS && !v.is_null() {
                    samples[i].push(v.clone());
                }
            }
        }
    }
    let columns: Vec<(String, ColumnType)> = names
        .iter()
        .zip(&samples)
        .map(|(n, s)| (n.clone(), infer_json(s.iter())))
        .collect();
    let mut rows = vec![];
    let mut parts = vec![];
    for (url, records) in pages {
        parts.push((url, records.len()));
        for r in records {
            let mut row = vec![Value::Null; columns.len()];
            for (k, v) in r {
                if let Some(i) = key_index.get(&normalize_name(&k)) {
                    row[*i] = v;
                }
            }
            rows.push(row);
        }
    }
    Fetched {
        columns,
        rows,
        watermark: None,
        parts,
    }
}

/// `url` with these query parameters set (replacing any of the same name).
fn with_query(url: &str, params: &[(String, String)]) -> Result<String> {
    let mut u = url::Url::parse(url)
        .map_err(|e| Error::User(format!("`{}` is not a URL: {e}", shown_url(url))))?;
    let keep: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(p, _)| p == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in keep.iter().chain(params) {
            q.append_pair(k, v);
        }
    }
    Ok(u.to_string())
}

/// The `rel="next"` URL of a `Link` header value.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A URL for logs and `_source`: query values whose names look secret are masked.
pub(crate) fn shown_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return strata_state::redact(url);
    };
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        [
            "key",
            "token",
            "secret",
            "password",
            "signature",
            "sig",
            "auth",
        ]
        .iter()
        .any(|s| k.contains(s))
    };
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if secret(&k) {
                "***".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !pairs.is_empty() {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
    }
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let h = "<https://api.x/items?page=3>; rel=\"next\", <https://api.x/items?page=9>; rel=\"last\"";
        assert_eq!(next_link(h).as_deref(), Some("https://api.x/items?page=3"));
        assert_eq!(
            next_link("<https://api.x/items?page=1>; rel=\"prev\""),
            None
        );
    }

    #[test]
    fn secrets_in_urls_are_masked() {
        assert_eq!(
            shown_url("https://u:pw@api.x/items?api_key=abc&page=2"),
            "https://u@api.x/items?api_key=***&page=2"
        );
    }

    #[test]
    fn query_parameters_are_replaced() {
        assert_eq!(
            with_query("http://h/p?page=1&q=a", &[("page".into(), "2".into())]).expect("url"),
            "http://h/p?q=a&page=2"
        );
    }
}
