//! RFC 9457 problem details (`application/problem+json`) with a `field`
//! member naming the offending field where there is one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::integration_sources::{FieldError, SourceError};
use crate::onboarding::OnboardingError;
use crate::tenants::TenantError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened and what to do.
    pub detail: String,
    /// The offending request field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with a status, title and detail.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found", detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 422 naming the field.
    pub fn invalid(e: FieldError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field",
            format!("{}: {}", e.field, e.message),
        )
        .with_field(e.field)
    }

    /// 500: the cause goes to the log, not to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "admin request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            "the gateway could not complete the request; see the gateway log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        Self::internal(&e)
    }
}

impl From<TenantError> for Problem {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::InvalidSlug(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid field", m).with_field("slug")
            }
            TenantError::Exists(_) => Self::conflict(e.to_string()).with_field("slug"),
            TenantError::NotFound(_) => Self::not_found(e.to_string()),
            other => Self::internal(&other),
        }
    }
}

impl From<SourceError> for Problem {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Invalid(f) => Self::invalid(f),
            SourceError::NoSyncService(m) => {
                Self::new(StatusCode::CONFLICT, "no sync service available", m)
                    .with_field("sync_service_id")
            }
            SourceError::NameTaken(_) => Self::conflict(e.to_string()).with_field("name"),
            SourceError::NotFound(_) => Self::not_found(e.to_string()),
            other => Self::internal(&other),
        }
    }
}

impl From<OnboardingError> for Problem {
    fn from(e: OnboardingError) -> Self {
        match e {
            OnboardingError::Invalid(f) => Self::invalid(f),
            OnboardingError::Conflict(m) => Self::conflict(m).with_field("component_id"),
            OnboardingError::NotFound => Self::not_found(e.to_string()),
            OnboardingError::Used(_) => Self::new(
                StatusCode::GONE,
                "enrollment token already used",
                e.to_string(),
            ),
            OnboardingError::Expired(_) => {
                Self::new(StatusCode::GONE, "enrollment token expired", e.to_string())
            }
            OnboardingError::Tenant(t) => t.into(),
            other => Self::internal(&other),
        }
    }
}
