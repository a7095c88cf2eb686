//! `strata scheduler` and `strata executor`: Ballista's scheduler and executor
//! processes, with the object stores of Strata's lakes built in.
//!
//! Plans reach them already cut by Strata ([`super::ClusterPlanner`]) and made
//! of DataFusion operators, which Ballista's codecs carry, and Strata's own
//! source reads ([`super::StrataCodec`]); what an executor adds is access to
//! the lake: `s3://`, `az://` and `gs://` URLs are
//! opened with credentials from the executor's environment (`AWS_*`,
//! `AZURE_*`, `GOOGLE_*`) or its `--storage-option KEY=VALUE` flags.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::error::{Error, Result};

/// Flags of `strata scheduler`.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (`0.0.0.0` for every interface).
    pub bind_host: String,
    /// The gRPC port clients and executors connect to (Ballista's default 50050).
    pub port: u16,
    /// The host name executors and clients reach this scheduler by.
    pub external_host: String,
    /// Object-store options, on top of the environment's: the scheduler
    /// opens the lake's stores to decode scans (it reads no data).
    pub storage_options: Vec<(String, String)>,
}

/// Runs a Ballista scheduler until the process is stopped.
pub async fn run_scheduler(opts: SchedulerOptions) -> Result<()> {
    let addr: SocketAddr = format!("{}:{}", opts.bind_host, opts.port)
        .parse()
        .map_err(|e| {
            Error::User(format!(
                "bad scheduler address {}:{}: {e}",
                opts.bind_host, opts.port
            ))
        })?;
    let mut config = SchedulerConfig::default()
        .with_hostname(opts.external_host.clone())
        .with_port(opts.port);
    config.bind_host = opts.bind_host.clone();
    config.override_physical_codec = Some(Arc::new(super::StrataCodec::default()));
    crate::storage::check_options(&opts.storage_options).map_err(Error::User)?;
    let registry = Arc::new(LakeStores::new(
        opts.storage_options.iter().cloned().collect(),
    ));
    config.override_session_builder = Some(Arc::new(move |session: SessionConfig| {
        let state = ballista_core::utils::default_session_builder(session)?;
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(registry.clone())
            .build()?;
        Ok(
            datafusion::execution::SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(Arc::new(runtime))
                .build(),
        )
    }));
    let ballista = |e: ballista_core::error::BallistaError| Error::User(format!("scheduler: {e}"));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista)?;
    start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(ballista)
}

/// Flags of `strata executor`.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Address to listen on.
    pub bind_host: String,
    /// The host name the scheduler and other executors reach this one by.
    pub external_host: Option<String>,
    /// The Arrow Flight port shuffle data is fetched from (Ballista's default 50051).
    pub port: u16,
    /// The gRPC port the scheduler pushes tasks to (Ballista's default 50052).
    pub grpc_port: u16,
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Tasks run at once (default: the number of cores).
    pub concurrent_tasks: Option<usize>,
    /// Where shuffle files are written (default: a temporary folder).
    pub work_dir: Option<String>,
    /// Object-store options (`aws_endpoint`, `aws_allow_http`, …), on top of
    /// the environment's.
    pub storage_options: Vec<(String, String)>,
}

/// Runs a Ballista executor until the process is stopped.
pub async fn run_executor(opts: ExecutorOptions) -> Result<()> {
    crate::storage::check_options(&opts.storage_options).map_err(Error::User)?;
    let registry = Arc::new(LakeStores::new(
        opts.storage_options.iter().cloned().collect(),
    ));
    let work_dir = opts.work_dir.clone();
    let mut config = ExecutorProcessConfig {
        bind_host: opts.bind_host.clone(),
        external_host: opts.external_host.clone(),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        work_dir: opts.work_dir.clone(),
        override_physical_codec: Some(Arc::new(super::StrataCodec::default())),
        ..Default::default()
    };
    if let Some(n) = opts.concurrent_tasks {
        config.vcores = n.max(1);
    }
    config.override_runtime_producer = Some(Arc::new(move |_: &SessionConfig| {
        let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(registry.clone());
        if let Some(dir) = &work_dir {
            runtime = runtime.with_temp_file_path(dir);
        }
        Ok(Arc::new(runtime.build()?))
    }));
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::User(format!("executor: {e}")))
}

/// The object stores an executor opens, one per bucket or container, made
/// from the URL with the environment's credentials and the given options.
#[derive(Debug)]
struct LakeStores {
    options: HashMap<String, String>,
    local: Arc<LocalFileSystem>,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl LakeStores {
    fn new(options: HashMap<String, String>) -> Self {
        Self {
            options,
            local: Arc::new(LocalFileSystem::new()),
            stores: RwLock::new(HashMap::new()),
        }
    }
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let key = super::table::store_root(url);
        self.stores.write().ok()?.insert(key, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = super::table::store_root(url);
        self.stores
            .write()
            .map_err(|_| DataFusionError::Internal("object store registry poisoned".into()))?
            .remove(&key)
            .ok_or_else(|| DataFusionError::Execution(format!("no object store for {key}")))
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if url.scheme() == "file" {
            return Ok(self.local.clone());
        }
        let key = super::table::store_root(url);
        if let Some(s) = self.stores.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        let root =
            Url::parse(&key).map_err(|e| DataFusionError::Execution(format!("{key}: {e}")))?;
        let (store, _) = crate::storage::store_for(&root, &self.options)
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        if let Ok(mut m) = self.stores.write() {
            m.insert(key, store.clone());
        }
        Ok(store)
    }
}
