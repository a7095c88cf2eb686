//! SQL over the Postgres wire protocol, read-only, for `psql`, drivers and BI
//! tools.
//!
//! Built on `datafusion-postgres`, whose own `serve()` accepts anyone and
//! lets clients write and change shared settings. Here instead:
//! - logins are `[serve.users.NAME]`, checked with SCRAM-SHA-256;
//! - each login reaches a session that registers only the layers it may see
//!   (so `\dt`, `information_schema` and `pg_catalog` list only those);
//! - every statement is planned and checked before it runs, in the simple and
//!   the extended protocol: DDL, DML, `COPY … TO`, `CREATE EXTERNAL TABLE`
//!   and `SET datafusion.*` are refused with SQLSTATE 25006, and a statement
//!   that cannot be planned is refused too (nothing unplanned runs);
//! - TLS, when configured, must load or the server does not start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, METADATA_USER, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use crate::ServeError;
use crate::auth::Login;
use crate::query::{QueryError, Sessions, read_only_message, verify_read_only};

/// SCRAM iterations (the RFC's minimum; what Postgres uses).
const ITERATIONS: usize = 4096;

/// A configured, not yet listening, SQL endpoint.
pub struct SqlServer {
    handlers: Arc<Handlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl SqlServer {
    /// Prepares the endpoint: one session per distinct set of layers, the
    /// logins' salted passwords, and TLS from `tls` (cert, key) relative to
    /// `root` — failing rather than falling back to plaintext.
    pub fn new(
        sessions: &Sessions,
        logins: &[Login],
        tls: Option<(&str, &str)>,
        root: &Path,
    ) -> Result<Self, ServeError> {
        if logins.is_empty() {
            return Err(ServeError::Config(
                "the SQL endpoint has no logins: add [serve.users.NAME] with a password".into(),
            ));
        }
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(GuardSet),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(ReadOnly),
        ];
        let mut services = HashMap::new();
        let mut parsers = HashMap::new();
        let mut contexts = HashMap::new();
        let mut by_layers: HashMap<Vec<String>, (Arc<DfSessionService>, Arc<Parser>)> =
            HashMap::new();
        for login in logins {
            let mut key = login.layers.clone();
            key.sort();
            let (service, parser) = match by_layers.get(&key) {
                Some(x) => x.clone(),
                None => {
                    let ctx = sessions.for_layers(&key);
                    setup_pg_catalog(&ctx, "datafusion", EmptyContextProvider)
                        .map_err(|e| ServeError::Config(format!("setting up pg_catalog: {e}")))?;
                    let service = Arc::new(DfSessionService::new_with_hooks(
                        Arc::new(ctx),
                        hooks.clone(),
                    ));
                    let parser = service.query_parser();
                    by_layers.insert(key.clone(), (service.clone(), parser.clone()));
                    (service, parser)
                }
            };
            services.insert(login.name.clone(), service);
            parsers.insert(login.name.clone(), parser);
            contexts.insert(login.name.clone(), sessions.for_layers(&key));
        }
        let mut salt = [0u8; 16];
        salt.iter_mut().for_each(|b| *b = rand_byte());
        let passwords = logins
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    gen_salted_password(&l.password, &salt, ITERATIONS),
                )
            })
            .collect();
        let tls = match tls {
            None => None,
            Some((cert, key)) => Some(load_tls(&root.join(cert), &root.join(key))?),
        };
        let connections = Arc::new(ConnectionManager::new());
        Ok(Self {
            handlers: Arc::new(Handlers {
                require_tls: tls.is_some(),
                service: Arc::new(Service {
                    services,
                    contexts,
                    parser: Arc::new(UserParser { parsers }),
                }),
                auth: Arc::new(Passwords {
                    salt: salt.to_vec(),
                    passwords,
                }),
                cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
                connections,
            }),
            tls,
        })
    }

    /// Whether clients must use TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts connections on `listener` until the returned future is dropped
    /// (which also drops every open connection).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (socket, addr) = accepted?;
                    let handlers = self.handlers.clone();
                    let tls = self.tls.clone();
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                            tracing::debug!(%addr, error = %e, "SQL connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

fn rand_byte() -> u8 {
    // Salt needs uniqueness, not secrecy: a v4 UUID's random bytes will do.
    uuid::Uuid::new_v4().as_bytes()[0]
}

fn load_tls(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        ServeError::Config(format!(
            "TLS {what} {} does not load: {e} (the SQL endpoint does not start without it)",
            path.display()
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("configuration for", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate and key", cert, &e))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn refused(e: QueryError) -> PgWireError {
    let msg = e.to_string();
    let code = match &e {
        QueryError::Invalid(m) => invalid_code(m),
        _ => e.sqlstate(),
    };
    user_error(code, msg)
}

/// The SQLSTATE of a statement that does not plan: an unknown table
/// (42P01), an unknown column (42703), or a syntax error (42601).
fn invalid_code(msg: &str) -> &'static str {
    if msg.contains("table") && msg.contains("not found") {
        "42P01"
    } else if msg.contains("field") || msg.contains("column") {
        "42703"
    } else {
        "42601"
    }
}

/// Gives errors that reach the client without a SQLSTATE (parse errors from
/// the Postgres parser in front) the one Postgres would send.
struct ErrorCodes;

impl pgwire::api::ErrorHandler for ErrorCodes {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::ApiError(e) = error {
            let msg = e.to_string();
            let code = if msg.contains("parser error") {
                "42601"
            } else if msg.contains("not found") {
                invalid_code(&msg)
            } else {
                "XX000"
            };
            *error = user_error(code, msg);
        }
    }
}

/// Salted passwords of the logins (one salt for all, made at start-up).
#[derive(Debug)]
struct Passwords {
    salt: Vec<u8>,
    passwords: HashMap<String, Vec<u8>>,
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.passwords.get(user) {
            Some(p) => Ok(Password::new(Some(self.salt.clone()), p.clone())),
            // The same answer as a wrong password: do not tell which logins exist.
            None => Err(PgWireError::InvalidPassword(user.to_string())),
        }
    }
}

struct Handlers {
    /// With TLS configured, plaintext clients are refused (as `hostssl`).
    require_tls: bool,
    service: Arc<Service>,
    auth: Arc<Passwords>,
    connections: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        // One per connection: the SASL handler keeps the exchange's state.
        let mut params = DefaultServerParameterProvider::default();
        params.is_superuser = false;
        params.default_transaction_read_only = true;
        Arc::new(Startup {
            require_tls: self.require_tls,
            inner: SASLAuthStartupHandler::new(Arc::new(params))
                .with_scram(ScramAuth::new(self.auth.clone()))
                .with_connection_manager(self.connections.clone()),
        })
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        Arc::new(ErrorCodes)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// SCRAM authentication, after refusing plaintext clients when TLS is on.
struct Startup<H> {
    require_tls: bool,
    inner: H,
}

#[async_trait]
impl<H: StartupHandler> StartupHandler for Startup<H> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_string(),
                "28000".to_string(),
                "this server requires TLS: connect with sslmode=require".to_string(),
            ))));
        }
        self.inner.on_startup(client, message).await
    }
}

/// Routes each client to the session of its login.
struct Service {
    services: HashMap<String, Arc<DfSessionService>>,
    /// Each login's session, to plan prepared queries again at execution.
    contexts: HashMap<String, SessionContext>,
    parser: Arc<UserParser>,
}

fn login_of<C: ClientInfo + ?Sized>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

/// Refuses the statements only DataFusion's own SQL dialect has, which the
/// Postgres parser in front would otherwise reject as mere syntax errors:
/// `CREATE EXTERNAL TABLE` and `COPY … TO` are writes, and say so (25006).
fn refuse_datafusion_statements(sql: &str) -> PgWireResult<()> {
    use datafusion::sql::parser::{DFParser, Statement as DfStatement};
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let Ok(statements) = DFParser::parse_sql_with_dialect(sql, &dialect) else {
        return Ok(()); // the Postgres parser reports it
    };
    for st in statements {
        let what = match st {
            DfStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE",
            DfStatement::CopyTo(_) => "COPY … TO",
            _ => continue,
        };
        return Err(user_error("25006", read_only_message(what)));
    }
    Ok(())
}

impl Service {
    fn for_client<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
    ) -> PgWireResult<&Arc<DfSessionService>> {
        let user = login_of(client);
        self.services
            .get(&user)
            .ok_or_else(|| user_error("28000", format!("no login `{user}`")))
    }
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let service = self.for_client(client)?.clone();
        refuse_datafusion_statements(query)?;
        SimpleQueryHandler::do_query(service.as_ref(), client, query).await
    }
}

type DfStatement = (String, Option<(Statement, LogicalPlan)>);

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = DfStatement;
    type QueryParser = UserParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let service = self.for_client(client)?.clone();
        // A prepared query's plan holds the table snapshots of when it was
        // prepared: plan it again, so it reads the newest commits too.
        let fresh = match &portal.statement.statement {
            (sql, Some((statement @ Statement::Query(_), _))) => {
                let ctx = self
                    .contexts
                    .get(&login_of(client))
                    .ok_or_else(|| user_error("28000", "no session for this login".into()))?;
                let plan = ctx
                    .state()
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        statement.clone(),
                    )))
                    .await
                    .map_err(|e| refused(QueryError::Invalid(e.strip_backtrace())))?;
                let mut fresh = Portal::default();
                fresh.name = portal.name.clone();
                fresh.statement = Arc::new(pgwire::api::stmt::StoredStatement::new(
                    portal.statement.id.clone(),
                    (sql.clone(), Some((statement.clone(), plan))),
                    portal.statement.parameter_types.clone(),
                ));
                fresh.parameter_format = portal.parameter_format.clone();
                fresh.parameters = portal.parameters.clone();
                fresh.result_column_format = portal.result_column_format.clone();
                fresh.state = portal.state.clone();
                Some(fresh)
            }
            _ => None,
        };
        let portal = fresh.as_ref().unwrap_or(portal);
        // Checked when parsed; checked again, as planned now, before it runs.
        if let (_, Some((_, plan))) = &portal.statement.statement {
            verify_read_only(plan).map_err(refused)?;
        }
        ExtendedQueryHandler::do_query(service.as_ref(), client, portal, max_rows).await
    }
}

/// Parses (and plans) prepared statements in the session of the client's login.
struct UserParser {
    parsers: HashMap<String, Arc<Parser>>,
}

#[async_trait]
impl QueryParser for UserParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let user = login_of(client);
        let parser = self
            .parsers
            .get(&user)
            .ok_or_else(|| user_error("28000", format!("no login `{user}`")))?;
        refuse_datafusion_statements(sql)?;
        parser.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        match self.parsers.values().next() {
            Some(p) => p.get_parameter_types(stmt),
            None => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match self.parsers.values().next() {
            Some(p) => p.get_result_schema(stmt, column_format),
            None => Ok(vec![]),
        }
    }
}

/// Postgres session settings clients and BI tools send, kept per connection
/// by `SetShowHook`.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// Runs before `SetShowHook`, whose fallback would apply any other `SET` to
/// the session every client shares: `SET datafusion.*` is refused, the
/// per-connection settings above pass through, and other Postgres settings
/// (`client_min_messages`, `SET TIME ZONE`, …) are acknowledged and ignored.
struct GuardSet;

impl GuardSet {
    fn check(statement: &Statement) -> Option<PgWireResult<Response>> {
        let Statement::Set(set) = statement else {
            return None;
        };
        let variable = match set {
            Set::SingleAssignment { variable, .. } => variable.to_string().to_lowercase(),
            _ => String::new(),
        };
        if variable.starts_with("datafusion.") {
            return Some(Err(user_error(
                "25006",
                read_only_message(&format!("SET {variable}")),
            )));
        }
        if matches!(
            set,
            Set::SingleAssignment {
                scope: None,
                hivevar: false,
                ..
            }
        ) && CLIENT_SETTINGS.contains(&variable.as_str())
        {
            return None; // SetShowHook keeps it for this connection
        }
        Some(Ok(Response::Execution(Tag::new("SET"))))
    }
}

#[async_trait]
impl QueryHook for GuardSet {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::check(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match Self::check(statement)? {
            Err(e) => Some(Err(e)),
            // Acknowledged at execution (below); an empty plan to carry it.
            Ok(_) => Some(Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::check(statement)
    }
}

/// Plans every statement the hooks before it did not answer, refuses any
/// that would write (or does not plan), and runs the rest itself so each
/// statement is planned once.
struct ReadOnly;

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let state = ctx.state();
        let plan = match state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement.clone(),
            )))
            .await
        {
            Ok(p) => p,
            Err(e) => return Some(Err(refused(QueryError::Invalid(e.strip_backtrace())))),
        };
        if let Err(e) = verify_read_only(&plan) {
            return Some(Err(refused(e)));
        }
        let df = match ctx.execute_logical_plan(plan).await {
            Ok(df) => df,
            Err(e) => return Some(Err(refused(QueryError::Failed(e.strip_backtrace())))),
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        Some(
            encode_dataframe(df, &Format::UnifiedText, Some(options))
                .await
                .map(Response::Query),
        )
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let plan = match ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement.clone(),
            )))
            .await
        {
            Ok(p) => p,
            Err(e) => return Some(Err(refused(QueryError::Invalid(e.strip_backtrace())))),
        };
        Some(verify_read_only(&plan).map(|_| plan).map_err(refused))
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Checked at parse and again in `Service::do_query`; DataFusion runs it.
        verify_read_only(plan).err().map(|e| Err(refused(e)))
    }
}
