//! Talking to Armis: the access token (fetched with the secret key, sent
//! raw in `Authorization`, refreshed before `expiration_utc`, fetched anew
//! once on a 401) and device search pages. The only module doing I/O.

use std::time::Duration;

use sr_adapter_sdk::AdapterError;
use sr_adapter_sdk::http::{Client, HttpError, Request};
use sr_adapter_sdk::log;
use sr_adapter_sdk::time::Timestamp;
use sr_adapter_sdk::url::Url;

use crate::api::TokenResponse;
use crate::settings::Plan;
use crate::sync::Searcher;

/// Longest a token is used before its expiry: refresh a minute early, or a
/// quarter of its lifetime early for short-lived tokens.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

struct Token {
    value: String,
    /// When to fetch a new one; `None` when Armis gave no usable expiry
    /// (then only a 401 replaces it).
    refresh_at: Option<Timestamp>,
}

/// A session with one Armis tenant.
pub struct ArmisClient {
    base: Url,
    secret_key: String,
    http: Client,
    token: Option<Token>,
}

impl ArmisClient {
    /// A client for the plan's tenant; no request is made yet.
    pub fn new(plan: &Plan) -> Self {
        Self {
            base: plan.base.clone(),
            secret_key: plan.secret_key.clone(),
            http: Client::new(),
            token: None,
        }
    }

    /// Fetches a new access token with the secret key. A 4xx answer means
    /// the key is wrong: `unauthorized`.
    pub fn authenticate(&mut self) -> Result<String, AdapterError> {
        let url = self.base.join_path("api/v1/access_token/");
        let request = Request::post(url)
            .header("Accept", "application/json")
            .form(&[("secret_key", self.secret_key.as_str())]);
        let response = match self.http.fetch(&request) {
            Ok(response) => response,
            Err(error) if matches!(error.status(), Some(400 | 401 | 403)) => {
                return Err(AdapterError::unauthorized(format!(
                    "Armis refused credentials.secret_key: {error}"
                )));
            }
            Err(error) => return Err(context("getting an access token", error)),
        };
        let body: TokenResponse = response
            .json()
            .map_err(|e| context("reading the access token", e))?;
        if body.data.access_token.trim().is_empty() {
            return Err(AdapterError::protocol(
                "Armis answered the access token request without a token",
            ));
        }
        let issued = Timestamp::now();
        let expires = body
            .data
            .expiration_utc
            .as_deref()
            .and_then(Timestamp::parse);
        if expires.is_none() {
            log::warn(
                "the Armis token has no readable expiration_utc; it is replaced only when Armis answers 401",
                &[],
            );
        }
        let refresh_at = expires.map(|expires| {
            let margin = REFRESH_MARGIN.min(expires.duration_since(issued) / 4);
            expires.add_seconds(-i64::try_from(margin.as_secs()).unwrap_or(0))
        });
        log::debug(
            "got an Armis access token",
            &[(
                "expires",
                &expires.map(|t| t.to_rfc3339()).unwrap_or_default(),
            )],
        );
        let value = body.data.access_token;
        self.token = Some(Token {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }

    /// The current token, fetching one when there is none or it is about to
    /// expire.
    fn token(&mut self) -> Result<String, AdapterError> {
        match &self.token {
            Some(token) if token.refresh_at.is_none_or(|at| Timestamp::now() < at) => {
                Ok(token.value.clone())
            }
            _ => self.authenticate(),
        }
    }
}

/// An SDK error as an adapter error, saying what was being done.
fn context(doing: &str, error: HttpError) -> AdapterError {
    AdapterError::from(error).context(doing)
}

impl Searcher for ArmisClient {
    fn search(
        &mut self,
        query: usize,
        aql: &str,
        from: u64,
        length: u32,
    ) -> Result<Vec<u8>, AdapterError> {
        let url = self
            .base
            .join_path("api/v1/search/")
            .with_query_param("aql", aql)
            .with_query_param("from", &from.to_string())
            .with_query_param("length", &length.to_string())
            .with_query_param("orderBy", "lastSeen");
        let doing = format!("searching queries[{query}] from {from}");
        let mut reauthenticated = false;
        let response = loop {
            let token = self.token()?;
            let request = Request::get(url.clone())
                .header("Authorization", token)
                .header("Accept", "application/json");
            match self.http.fetch(&request) {
                Ok(response) => break response,
                Err(error) if error.status() == Some(401) && !reauthenticated => {
                    log::info(
                        "Armis rejected the access token (401); fetching a new one and retrying once",
                        &[("from", &from.to_string())],
                    );
                    self.token = None;
                    reauthenticated = true;
                }
                Err(error) if error.status() == Some(400) => {
                    return Err(AdapterError::invalid_config(
                        &format!("queries[{query}].query"),
                        format!("Armis refused the search: {error}"),
                    ));
                }
                Err(error) => return Err(context(&doing, error)),
            }
        };
        Ok(response.into_body())
    }
}
