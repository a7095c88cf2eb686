//! Object storage: the lake and file sources on `s3://`, `az://` (also
//! `abfs[s]://`, `azure://`, `adl://`) and `gs://` URLs, through `object_store`.
//!
//! Credentials come from the environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`, as the
//! clouds' own tools read them) and from `[storage]` in strata.toml, whose
//! values may be `${ENV}` references. They are handed to the object-store
//! builders and nowhere else: never logged, never stored.
//!
//! Commits to a lake on S3 rely on conditional writes (`If-None-Match: *`),
//! which AWS S3 and most S3-compatible stores honour, so two writers never
//! overwrite each other's log entry; no lock table is needed.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{Error, Result};

/// The URL schemes Strata reads and writes through object storage.
pub const SCHEMES: &[&str] = &["s3", "s3a", "az", "abfs", "abfss", "azure", "adl", "gs"];

/// Which cloud a scheme belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    Aws,
    Azure,
    Gcp,
}

fn cloud_of(scheme: &str) -> Option<Cloud> {
    match scheme {
        "s3" | "s3a" => Some(Cloud::Aws),
        "az" | "abfs" | "abfss" | "azure" | "adl" => Some(Cloud::Azure),
        "gs" => Some(Cloud::Gcp),
        _ => None,
    }
}

/// Whether `location` is an object-store URL Strata handles.
pub fn is_remote(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(scheme, _)| cloud_of(&scheme.to_ascii_lowercase()).is_some())
}

/// Checks `[storage]` options: each key must be an option of at least one of
/// the S3, Azure or GCS clients (`aws_endpoint`, `azure_storage_account_name`,
/// `google_service_account`, `allow_http`, …).
pub fn check_options(options: &[(String, String)]) -> std::result::Result<(), String> {
    for (k, _) in options {
        let known = AmazonS3ConfigKey::from_str(k).is_ok()
            || AzureConfigKey::from_str(k).is_ok()
            || GoogleConfigKey::from_str(k).is_ok();
        if !known {
            return Err(format!(
                "[storage] `{k}` is not an object-store option (S3: aws_endpoint, aws_region, aws_access_key_id, aws_secret_access_key, aws_allow_http, …; Azure: azure_storage_account_name, azure_storage_account_key, azure_storage_use_emulator, …; GCS: google_service_account, …)"
            ));
        }
    }
    Ok(())
}

/// Builds the store at the root (bucket or container) of `url`, and the path
/// of `url` inside it. Options that belong to another cloud are ignored.
pub fn store_for(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<(ObjectStoreRef, StorePath)> {
    let scheme = url.scheme().to_ascii_lowercase();
    let fail = |e: object_store::Error| {
        Error::User(format!(
            "cannot use object storage at {}: {e}",
            redact(url.as_str())
        ))
    };
    let store: ObjectStoreRef = match cloud_of(&scheme) {
        Some(Cloud::Aws) => Arc::new(
            keys_of::<AmazonS3ConfigKey>(options)
                .fold(
                    AmazonS3Builder::from_env().with_url(url.as_str()),
                    |b, (k, v)| b.with_config(k, v),
                )
                .build()
                .map_err(fail)?,
        ),
        Some(Cloud::Azure) => Arc::new(
            keys_of::<AzureConfigKey>(options)
                .fold(
                    MicrosoftAzureBuilder::from_env().with_url(url.as_str()),
                    |b, (k, v)| b.with_config(k, v),
                )
                .build()
                .map_err(fail)?,
        ),
        Some(Cloud::Gcp) => Arc::new(
            keys_of::<GoogleConfigKey>(options)
                .fold(
                    GoogleCloudStorageBuilder::from_env().with_url(url.as_str()),
                    |b, (k, v)| b.with_config(k, v),
                )
                .build()
                .map_err(fail)?,
        ),
        None => {
            return Err(Error::User(format!(
                "`{}` is not an object-store URL (use s3://, az://, gs:// or a local folder)",
                redact(url.as_str())
            )));
        }
    };
    let path = StorePath::from_url_path(url.path())
        .map_err(|e| Error::User(format!("bad object path in {}: {e}", redact(url.as_str()))))?;
    Ok((store, path))
}

/// The options that are keys of one cloud's client (the others are ignored).
fn keys_of<K: FromStr>(options: &HashMap<String, String>) -> impl Iterator<Item = (K, &String)> {
    options
        .iter()
        .filter_map(|(k, v)| K::from_str(k).ok().map(|key| (key, v)))
}

/// A URL without user info or query (where some put keys).
pub fn redact(location: &str) -> String {
    match Url::parse(location) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => location.to_string(),
    }
}

/// delta-rs's hook: stores for the cloud schemes, built as [`store_for`] does.
struct Factory;

impl ObjectStoreFactory for Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        store_for(url, &config.raw).map_err(|e| DeltaTableError::Generic(e.to_string()))
    }
}

impl LogStoreFactory for Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // The default log store commits with a conditional put (create if absent).
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Teaches delta-rs the cloud schemes (once per process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factory = Arc::new(Factory);
        for scheme in SCHEMES {
            if let Ok(url) = Url::parse(&format!("{scheme}://")) {
                object_store_factories().insert(url.clone(), factory.clone());
                logstore_factories().insert(url, factory.clone());
            }
        }
    });
}

/// One object a source's glob matched.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its full URL (what the manifest records).
    pub url: String,
    /// Its metadata (size, last modified).
    pub meta: ObjectMeta,
}

/// Whether a path segment holds glob syntax.
fn has_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '[', '{'])
}

/// Lists the objects matching a glob URL (`s3://bucket/landing/*/orders-*.csv`),
/// sorted by URL. `*` stays within one path segment; `**` crosses them.
pub async fn list(
    pattern_url: &str,
    options: &HashMap<String, String>,
) -> Result<(ObjectStoreRef, Vec<Listed>)> {
    let (base, key_pattern) = split_pattern(pattern_url)?;
    let url = Url::parse(&base)
        .map_err(|e| Error::User(format!("bad URL `{}`: {e}", redact(pattern_url))))?;
    let (store, _) = store_for(&url, options)?;
    let literal: Vec<&str> = key_pattern
        .split('/')
        .take_while(|s| !has_glob(s))
        .collect();
    let whole = literal.len() == key_pattern.split('/').count();
    let prefix = if whole {
        // No glob: the pattern names one object (or a folder of them).
        key_pattern.clone()
    } else {
        literal.join("/")
    };
    let matcher = glob::Pattern::new(&key_pattern)
        .map_err(|e| Error::User(format!("bad path pattern `{}`: {e}", redact(pattern_url))))?;
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let prefix_path = (!prefix.is_empty()).then(|| StorePath::from(prefix.as_str()));
    let metas: Vec<ObjectMeta> = store
        .list(prefix_path.as_ref())
        .try_collect()
        .await
        .map_err(|e| Error::External(format!("listing {}: {e}", redact(pattern_url))))?;
    let mut out = vec![];
    for meta in metas {
        let key = meta.location.to_string();
        let keep = if whole {
            key == key_pattern || key.starts_with(&format!("{key_pattern}/"))
        } else {
            matcher.matches_with(&key, opts)
        };
        if keep {
            out.push(Listed {
                url: format!("{base}/{key}"),
                meta,
            });
        }
    }
    out.sort_by(|a, b| a.url.cmp(&b.url));
    Ok((store, out))
}

/// `s3://bucket/a/*.csv` → (`s3://bucket`, `a/*.csv`).
fn split_pattern(pattern_url: &str) -> Result<(String, String)> {
    let bad = || {
        Error::User(format!(
            "`{}` is not an object-store URL of the form scheme://bucket/path",
            redact(pattern_url)
        ))
    };
    let (scheme, rest) = pattern_url.split_once("://").ok_or_else(bad)?;
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((
        format!("{scheme}://{authority}"),
        key.trim_matches('/').to_string(),
    ))
}

/// Downloads `objects` into `dir` (4 at a time), each file's modification
/// time set to the object's, and returns the local paths in the same order.
pub async fn fetch(
    store: &ObjectStoreRef,
    objects: &[Listed],
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>> {
    let jobs = objects.iter().cloned().enumerate().map(|(i, o)| {
        let store = store.clone();
        let name = o.meta.location.filename().unwrap_or("object").to_string();
        // Keep the file name (its extension says how it is compressed).
        let path = dir.join(format!("{i:06}-{name}"));
        async move {
            let o = &o;
            let shown = redact(&o.url);
            let mut stream = store
                .get(&o.meta.location)
                .await
                .map_err(|e| Error::External(format!("reading {shown}: {e}")))?
                .into_stream();
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| Error::External(format!("spooling {shown}: {e}")))?;
            use tokio::io::AsyncWriteExt;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Error::External(format!("reading {shown}: {e}")))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::External(format!("spooling {shown}: {e}")))?;
            }
            file.flush()
                .await
                .map_err(|e| Error::External(format!("spooling {shown}: {e}")))?;
            let file = file.into_std().await;
            let modified: std::time::SystemTime = o.meta.last_modified.into();
            let _ = file.set_modified(modified);
            Ok::<_, Error>(path)
        }
    });
    futures::stream::iter(jobs).buffered(4).try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_split_at_the_bucket() {
        assert_eq!(
            split_pattern("s3://b/landing/*.csv").expect("split"),
            ("s3://b".to_string(), "landing/*.csv".to_string())
        );
        assert_eq!(
            split_pattern("gs://b").expect("split"),
            ("gs://b".to_string(), String::new())
        );
        assert!(split_pattern("s3:///x").is_err());
    }

    #[test]
    fn remote_locations_are_recognised() {
        assert!(is_remote("s3://bucket/lake"));
        assert!(is_remote("AZ://container/lake"));
        assert!(is_remote("gs://bucket"));
        assert!(!is_remote("/data/lake"));
        assert!(!is_remote("file:///data/lake"));
    }

    #[test]
    fn unknown_storage_options_are_named() {
        let ok = [
            (
                "aws_endpoint".to_string(),
                "http://127.0.0.1:9000".to_string(),
            ),
            ("azure_storage_use_emulator".to_string(), "true".to_string()),
            ("allow_http".to_string(), "true".to_string()),
        ];
        assert!(check_options(&ok).is_ok());
        let e = check_options(&[("aws_endpiont".into(), "x".into())]).expect_err("typo");
        assert!(e.contains("`aws_endpiont`"), "{e}");
    }

    #[test]
    fn credentials_in_urls_are_not_shown() {
        assert_eq!(redact("s3://key:secret@bucket/x?sig=abc"), "s3://bucket/x");
    }

    #[tokio::test]
    async fn lists_with_globs_in_memory_stores() {
        // The matcher, on an in-memory store with the same layout rules.
        let store = object_store::memory::InMemory::new();
        for k in ["l/a.csv", "l/b.csv", "l/sub/c.csv", "l/d.json"] {
            store
                .put(&StorePath::from(k), bytes_of(k))
                .await
                .expect("put");
        }
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let keys: Vec<String> = store
            .list(Some(&StorePath::from("l")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        let matching = |p: &str| {
            let pat = glob::Pattern::new(p).expect("pattern");
            let mut v: Vec<_> = keys
                .iter()
                .filter(|k| pat.matches_with(k, opts))
                .cloned()
                .collect();
            v.sort();
            v
        };
        assert_eq!(matching("l/*.csv"), ["l/a.csv", "l/b.csv"]);
        assert_eq!(
            matching("l/**/*.csv"),
            ["l/a.csv", "l/b.csv", "l/sub/c.csv"]
        );
    }

    fn bytes_of(s: &str) -> object_store::PutPayload {
        object_store::PutPayload::from(s.as_bytes().to_vec())
    }
}
