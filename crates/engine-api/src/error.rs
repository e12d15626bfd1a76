//! One place maps engine errors to HTTP statuses and Docker's `{"message": …}` body.
use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use axum::response::IntoResponse;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn into_response(self) -> Response<Body> {
        IntoResponse::into_response(self)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        if self.status == StatusCode::NOT_MODIFIED {
            return Response::builder().status(self.status).body(Body::empty()).unwrap_or_default();
        }
        let body = serde_json::json!({ "message": self.message }).to_string();
        Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default()
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        let status = match &e {
            E::NotFound { .. } | E::NetworkNotFound(_) => StatusCode::NOT_FOUND,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            E::NotModified(..) => StatusCode::NOT_MODIFIED,
            E::Start { exit_code: 126 | 127, .. } => StatusCode::BAD_REQUEST,
            E::Image(img) => match img {
                image::Error::NotFound(_) => StatusCode::NOT_FOUND,
                image::Error::InvalidReference { .. } | image::Error::Ambiguous(_) => StatusCode::BAD_REQUEST,
                image::Error::Conflict { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            E::Registry(r) => match r {
                registry::Error::ManifestUnknown { .. } | registry::Error::BlobUnknown { .. } => StatusCode::NOT_FOUND,
                registry::Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            E::Image(img) => img.to_string(),
            other => other.to_string(),
        };
        if status.is_server_error() {
            tracing::warn!(error = %message, "request failed");
        }
        ApiError::new(status, message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
