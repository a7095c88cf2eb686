//! Who is calling: SQL logins (`[serve.users.NAME]`) and API bearer tokens
//! (`[serve.tokens.NAME]`), with their secrets expanded from the environment
//! once, at start-up.

use sha2::{Digest, Sha256};
use strata_project::{Role, Serve};

use crate::ServeError;

/// One SQL login, its password expanded.
#[derive(Clone)]
pub struct Login {
    /// The login name.
    pub name: String,
    /// The password in clear (held in memory only, for SCRAM).
    pub password: String,
    /// What it may do.
    pub role: Role,
    /// The layers it sees.
    pub layers: Vec<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

/// The caller of an API route.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The token's name (`local` when the API is open on loopback).
    pub name: String,
    /// `User` reads; `Admin` also triggers runs.
    pub role: Role,
    /// The layers its queries see.
    pub layers: Vec<String>,
}

impl Caller {
    /// `read` or `admin`, as the API names scopes.
    pub fn scope(&self) -> &'static str {
        match self.role {
            Role::User => "read",
            Role::Admin => "admin",
        }
    }
}

/// How API requests are authenticated.
#[derive(Clone)]
pub enum ApiAuth {
    /// Bearer tokens, by SHA-256 of the token (compared in constant time).
    Tokens(Vec<([u8; 32], Caller)>),
    /// No tokens configured and the API listens on loopback only: every
    /// caller is a local admin (as `dbt docs serve` or a Dagster dev UI).
    OpenLoopback,
}

impl ApiAuth {
    /// The caller a `Authorization` header value stands for (`None`: refused).
    pub fn caller(&self, authorization: Option<&str>) -> Option<Caller> {
        match self {
            ApiAuth::OpenLoopback => Some(Caller {
                name: "local".into(),
                role: Role::Admin,
                layers: strata_project::serve::ALL_LAYERS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            }),
            ApiAuth::Tokens(tokens) => {
                let given = authorization?.strip_prefix("Bearer ")?.trim();
                let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
                let mut found = None;
                for (d, caller) in tokens {
                    // Look at every token, so timing does not tell which matched.
                    let same = d
                        .iter()
                        .zip(digest.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                    if same {
                        found = Some(caller.clone());
                    }
                }
                found
            }
        }
    }
}

fn expand(what: &str, value: &str) -> Result<String, ServeError> {
    strata_project::expand_env(value).map_err(|var| {
        ServeError::Config(format!(
            "{what} refers to ${{{var}}}, which is not set in the environment"
        ))
    })
}

/// The SQL logins of `[serve]`, passwords expanded.
pub fn logins(serve: &Serve) -> Result<Vec<Login>, ServeError> {
    serve
        .users
        .iter()
        .map(|u| {
            let password = expand(&format!("[serve.users.{}] password", u.name), &u.password)?;
            if password.is_empty() {
                return Err(ServeError::Config(format!(
                    "[serve.users.{}] password is empty",
                    u.name
                )));
            }
            Ok(Login {
                name: u.name.clone(),
                password,
                role: u.role,
                layers: u.layers.clone(),
            })
        })
        .collect()
}

/// The API's authentication for an HTTP server bound to `addr`.
///
/// Without tokens the API is open only on a loopback address; on any other
/// address it refuses to start rather than serve everyone.
pub fn api_auth(serve: &Serve, addr: &std::net::SocketAddr) -> Result<ApiAuth, ServeError> {
    if serve.tokens.is_empty() {
        if addr.ip().is_loopback() {
            return Ok(ApiAuth::OpenLoopback);
        }
        return Err(ServeError::Config(format!(
            "the HTTP API would listen on {addr} with no [serve.tokens]: add a token (token = \"${{STRATA_API_TOKEN}}\") or listen on 127.0.0.1"
        )));
    }
    let mut tokens = vec![];
    for t in &serve.tokens {
        let token = expand(&format!("[serve.tokens.{}] token", t.name), &t.token)?;
        if token.len() < 16 {
            return Err(ServeError::Config(format!(
                "[serve.tokens.{}] token is shorter than 16 characters: use a long random token",
                t.name
            )));
        }
        tokens.push((
            Sha256::digest(token.as_bytes()).into(),
            Caller {
                name: t.name.clone(),
                role: t.role,
                layers: t.layers.clone(),
            },
        ));
    }
    Ok(ApiAuth::Tokens(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_value_and_scoped() {
        let serve = Serve {
            tokens: vec![
                strata_project::ApiToken {
                    name: "ci".into(),
                    token: "read-token-0123456789".into(),
                    role: Role::User,
                    layers: vec!["gold".into()],
                },
                strata_project::ApiToken {
                    name: "ops".into(),
                    token: "admin-token-0123456789".into(),
                    role: Role::Admin,
                    layers: vec!["bronze".into(), "silver".into(), "gold".into()],
                },
            ],
            ..Default::default()
        };
        let addr: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let auth = api_auth(&serve, &addr).expect("auth");
        let ci = auth
            .caller(Some("Bearer read-token-0123456789"))
            .expect("ci");
        assert_eq!((ci.name.as_str(), ci.scope()), ("ci", "read"));
        let ops = auth
            .caller(Some("Bearer admin-token-0123456789"))
            .expect("ops");
        assert_eq!(ops.scope(), "admin");
        assert!(auth.caller(Some("Bearer nope")).is_none());
        assert!(auth.caller(Some("read-token-0123456789")).is_none());
        assert!(auth.caller(None).is_none());
    }

    #[test]
    fn no_tokens_is_open_on_loopback_only() {
        let serve = Serve::default();
        let lo: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert!(matches!(api_auth(&serve, &lo), Ok(ApiAuth::OpenLoopback)));
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let err = api_auth(&serve, &any).err().expect("refused").to_string();
        assert!(err.contains("no [serve.tokens]"), "{err}");
    }
}
