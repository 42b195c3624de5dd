//! Reading request bodies with a hard size limit.

use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;

use crate::service::{KbsError, SerdeFailure};

fn too_large(limit: usize) -> KbsError {
    KbsError::PayloadTooLarge { limit }
}

/// Collects the body, refusing it as soon as it exceeds `limit` bytes.
pub(super) async fn read(
    req: &actix_web::HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, KbsError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| KbsError::SerdeError(SerdeFailure::Body(e)))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
