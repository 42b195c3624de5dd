//! Every error leaves as `{"type": ".../errors/<Kind>", "detail": "..."}` with the kind's
//! status.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use coffer_protocol::{ErrorKind, Problem};

use crate::service::KbsError;

impl ResponseError for KbsError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        if self.kind == ErrorKind::TooManyRequests {
            // Expired sessions are purged every minute, so room appears within one.
            builder.insert_header((actix_web::http::header::RETRY_AFTER, "60"));
        }
        let mut res = builder.json(Problem::new(self.kind, &self.detail));
        // Read back by the logging middleware, which knows the request (one line per refusal).
        res.extensions_mut().insert(self.clone());
        res
    }
}

/// Unknown first segment under `/kbs/v0` (Trustee treats it as a plugin name).
pub async fn plugin_not_found(req: HttpRequest) -> HttpResponse {
    let name = req
        .path()
        .trim_start_matches("/kbs/v0/")
        .split('/')
        .next()
        .unwrap_or("");
    KbsError::new(
        ErrorKind::PluginNotFound,
        format!("Plugin {name} not found"),
    )
    .error_response()
}

/// Anything else.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    KbsError::new(
        ErrorKind::InvalidRequestPath,
        format!("Request path {} is invalid", req.path()),
    )
    .error_response()
}
