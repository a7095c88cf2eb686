//! Throwaway state stores for tests (feature `testing`): SQLite in a temporary
//! folder, or a fresh database on the machine's PostgreSQL
//! (`STRATA_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`).

use sqlx::AnyPool;

use crate::StateStore;

/// A store that lives as long as the test: call [`TestStore::cleanup`] at the end.
pub struct TestStore {
    /// The store.
    pub store: StateStore,
    /// Its URL (for a second connection, as a second process would open).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    admin: Option<(AnyPool, String)>,
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in a temporary folder.
    Sqlite,
    /// A new database on the machine's PostgreSQL.
    Postgres,
}

impl TestStore {
    /// A fresh, migrated store on `backend`. Panics when the backend is
    /// unreachable: these tests need it (see CONTRIBUTING.md).
    pub async fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}/state.db", dir.path().display());
                let store = StateStore::open(&url).await.expect("open SQLite store");
                TestStore {
                    store,
                    url,
                    _dir: Some(dir),
                    admin: None,
                }
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let admin_url = std::env::var("STRATA_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let admin = AnyPool::connect(&admin_url)
                    .await
                    .expect("PostgreSQL must be running for this test (see CONTRIBUTING.md)");
                let db = format!("strata_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(&format!("CREATE DATABASE {db}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin_url);
                let url = format!("{base}/{db}");
                let store = StateStore::open(&url).await.expect("open PostgreSQL store");
                TestStore {
                    store,
                    url,
                    _dir: None,
                    admin: Some((admin, db)),
                }
            }
        }
    }

    /// Drops the PostgreSQL database (SQLite's folder goes when dropped).
    pub async fn cleanup(self) {
        let TestStore { store, admin, .. } = self;
        drop(store);
        if let Some((admin, db)) = admin {
            let _ = sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
    }
}
