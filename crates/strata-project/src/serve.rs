//! `[serve]`: what `strata serve` listens on, who may connect, and what each
//! one may see.
//!
//! Passwords and tokens may hold `${ENV}` references. They are kept as written
//! here and expanded only when the server starts, so a project loads (and
//! `strata run` works) without them, and they never reach logs or the state
//! store.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Errors, LocatedError};

/// The layers a `user` sees when `[serve] user_layers` is not given.
pub const DEFAULT_USER_LAYERS: &[&str] = &["gold", "silver"];
/// Every layer (what an `admin` sees).
pub const ALL_LAYERS: &[&str] = &["bronze", "silver", "gold"];

/// `[serve]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Serve {
    /// The HTTP address (API, dashboard, `/metrics`, `/healthz`). Default `127.0.0.1:8080`.
    pub http: String,
    /// The Postgres-wire SQL address. Default `127.0.0.1:5433`.
    pub sql: String,
    /// PEM certificate chain for TLS on the SQL endpoint (with `tls_key`).
    pub tls_cert: Option<String>,
    /// PEM private key (PKCS#8) for TLS on the SQL endpoint.
    pub tls_key: Option<String>,
    /// The layers a `user` may see (default gold and silver).
    pub user_layers: Vec<String>,
    /// `[serve.users.NAME]`: SQL users.
    pub users: Vec<SqlUser>,
    /// `[serve.tokens.NAME]`: API bearer tokens.
    pub tokens: Vec<ApiToken>,
}

impl Default for Serve {
    fn default() -> Self {
        Self {
            http: "127.0.0.1:8080".into(),
            sql: "127.0.0.1:5433".into(),
            tls_cert: None,
            tls_key: None,
            user_layers: DEFAULT_USER_LAYERS.iter().map(|s| s.to_string()).collect(),
            users: vec![],
            tokens: vec![],
        }
    }
}

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads the layers in `user_layers` (or its own `layers`).
    User,
    /// Reads every layer; through the API, also triggers runs.
    Admin,
}

impl Role {
    /// `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// `[serve.users.NAME]`: one login of the SQL endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlUser {
    /// The login name.
    pub name: String,
    /// The password as written (may hold `${ENV}`).
    pub password: String,
    /// `user` (default) or `admin`.
    pub role: Role,
    /// The layers it may see.
    pub layers: Vec<String>,
}

/// `[serve.tokens.NAME]`: one bearer token of the HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// A name for people and logs (never the token).
    pub name: String,
    /// The token as written (may hold `${ENV}`).
    pub token: String,
    /// `read` (role user) or `admin`.
    pub role: Role,
    /// The layers it may query.
    pub layers: Vec<String>,
}

/// `[serve]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// HTTP address.
    pub http: Option<String>,
    /// SQL address.
    pub sql: Option<String>,
    /// TLS certificate.
    pub tls_cert: Option<String>,
    /// TLS key.
    pub tls_key: Option<String>,
    /// Layers for users.
    pub user_layers: Option<Spanned<Vec<String>>>,
    /// SQL users.
    pub users: Option<IndexMap<String, Spanned<RawUser>>>,
    /// API tokens.
    pub tokens: Option<IndexMap<String, Spanned<RawToken>>>,
}

/// `[serve.users.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Password.
    pub password: String,
    /// `user` or `admin`.
    pub role: Option<Spanned<String>>,
    /// Layers.
    pub layers: Option<Spanned<Vec<String>>>,
}

/// `[serve.tokens.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// The token.
    pub token: String,
    /// `read` or `admin`.
    pub scope: Option<Spanned<String>>,
    /// Layers.
    pub layers: Option<Spanned<Vec<String>>>,
}

/// The keys allowed under `[serve]`.
pub const SERVE_KEYS: &[&str] = &[
    "http",
    "sql",
    "tls_cert",
    "tls_key",
    "user_layers",
    "users",
    "tokens",
];
/// The keys allowed under `[serve.users.NAME]`.
pub const USER_KEYS: &[&str] = &["password", "role", "layers"];
/// The keys allowed under `[serve.tokens.NAME]`.
pub const TOKEN_KEYS: &[&str] = &["token", "scope", "layers"];

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, String) -> LocatedError;

fn layers(v: &Spanned<Vec<String>>, at: At<'_>, errors: &mut Errors) -> Vec<String> {
    let mut out = vec![];
    for l in v.get_ref() {
        if ALL_LAYERS.contains(&l.as_str()) {
            out.push(l.clone());
        } else {
            errors.push(
                at(v.span(), format!("unknown layer `{l}`"))
                    .with_help("layers are bronze, silver and gold"),
            );
        }
    }
    out
}

/// Resolves `[serve]`.
pub(crate) fn resolve_serve(spanned: &Spanned<RawServe>, at: At<'_>) -> Result<Serve, Errors> {
    let mut errors = Errors::default();
    let raw = spanned.get_ref();
    let d = Serve::default();
    let check = |a: &Option<String>, default: String, errors: &mut Errors| match a {
        None => default,
        Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => a.clone(),
        Some(a) => {
            errors.push(
                at(spanned.span(), format!("bad address `{a}`"))
                    .with_help("write IP:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080"),
            );
            default
        }
    };
    let http = check(&raw.http, d.http, &mut errors);
    let sql = check(&raw.sql, d.sql, &mut errors);
    if raw.tls_cert.is_some() != raw.tls_key.is_some() {
        errors.push(
            at(spanned.span(), "TLS needs both tls_cert and tls_key".into())
                .with_help("give both PEM files, or neither to serve SQL without TLS"),
        );
    }
    let user_layers = match &raw.user_layers {
        Some(v) => layers(v, at, &mut errors),
        None => d.user_layers,
    };
    let role_of = |s: &Spanned<String>, admin: &str, user: &str, errors: &mut Errors| match s
        .get_ref()
        .as_str()
    {
        a if a == admin => Role::Admin,
        u if u == user => Role::User,
        other => {
            errors.push(
                at(s.span(), format!("unknown role `{other}`"))
                    .with_help(format!("write `{user}` or `{admin}`")),
            );
            Role::User
        }
    };
    let layers_for =
        |role: Role, own: &Option<Spanned<Vec<String>>>, errors: &mut Errors| match (own, role) {
            (Some(v), _) => layers(v, at, errors),
            (None, Role::Admin) => ALL_LAYERS.iter().map(|s| s.to_string()).collect(),
            (None, Role::User) => user_layers.clone(),
        };
    let mut users = vec![];
    for (name, u) in raw.users.iter().flatten() {
        let r = u.get_ref();
        if r.password.is_empty() {
            errors.push(
                at(u.span(), format!("user `{name}` has an empty password"))
                    .with_help("set password = \"${SOME_ENV_VAR}\""),
            );
        }
        let role = r
            .role
            .as_ref()
            .map_or(Role::User, |s| role_of(s, "admin", "user", &mut errors));
        users.push(SqlUser {
            name: name.clone(),
            password: r.password.clone(),
            role,
            layers: layers_for(role, &r.layers, &mut errors),
        });
    }
    let mut tokens = vec![];
    for (name, t) in raw.tokens.iter().flatten() {
        let r = t.get_ref();
        if r.token.is_empty() {
            errors.push(
                at(t.span(), format!("token `{name}` is empty"))
                    .with_help("set token = \"${SOME_ENV_VAR}\""),
            );
        }
        let role = r
            .scope
            .as_ref()
            .map_or(Role::User, |s| role_of(s, "admin", "read", &mut errors));
        tokens.push(ApiToken {
            name: name.clone(),
            token: r.token.clone(),
            role,
            layers: layers_for(role, &r.layers, &mut errors),
        });
    }
    errors.into_result(Serve {
        http,
        sql,
        tls_cert: raw.tls_cert.clone(),
        tls_key: raw.tls_key.clone(),
        user_layers,
        users,
        tokens,
    })
}
