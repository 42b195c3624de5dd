//! Every error leaves as `{"type": ".../errors/<Kind>", "detail": "..."}` with the kind's
//! status ([`KbsError::kind`], [`KbsError::status`]); the logging middleware in
//! [`super::app`] finds the error on the response and logs it once, inside the request span.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use coffer_protocol::Problem;

use crate::service::{InvalidPath, KbsError};

impl ResponseError for KbsError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        if matches!(self, KbsError::TooManyRequests) {
            // Expired sessions are purged every minute, so room appears within one.
            builder.insert_header((actix_web::http::header::RETRY_AFTER, "60"));
        }
        builder.json(Problem::new(self.kind(), self.to_string()))
    }
}

/// Unknown first segment under `/kbs/v0` (Trustee treats it as a plugin name).
pub(super) async fn plugin_not_found(req: HttpRequest) -> Result<HttpResponse, KbsError> {
    let name = req
        .path()
        .trim_start_matches("/kbs/v0/")
        .split('/')
        .next()
        .unwrap_or("");
    Err(KbsError::PluginNotFound {
        name: name.to_string(),
    })
}

/// Anything else.
pub(super) async fn not_found(req: HttpRequest) -> Result<HttpResponse, KbsError> {
    Err(KbsError::InvalidRequestPath(InvalidPath::NoRoute(
        req.path().to_string(),
    )))
}
