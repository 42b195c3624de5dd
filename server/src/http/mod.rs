//! HTTP surface: Trustee's `/kbs/v0` API, coffer's admin extras under `/coffer/v1`, and the
//! operational endpoints `/healthz`, `/readyz`, `/metrics`, `/.well-known/jwks.json`.

mod admin;
mod body;
mod error;
mod guest;
mod ops;

use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{web, HttpRequest};
use futures_util::FutureExt;

use crate::service::{Kbs, KbsError};

/// Shared state handed to every handler.
pub struct AppState {
    /// The KBS.
    pub kbs: Arc<Kbs>,
    /// Largest accepted body, bytes.
    pub max_body_bytes: usize,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/kbs/v0")
            .route("/auth", web::post().to(guest::auth))
            .route("/attest", web::post().to(guest::attest))
            .route("/resource/{path:.*}", web::get().to(guest::get_resource))
            .route("/resource/{path:.*}", web::post().to(admin::set_resource))
            .route(
                "/resource/{path:.*}",
                web::delete().to(admin::delete_resource),
            )
            .route(
                "/resource-policy",
                web::post().to(admin::set_resource_policy),
            )
            .route(
                "/resource-policy",
                web::get().to(admin::list_resource_policies),
            )
            .route(
                "/attestation-policy",
                web::post().to(admin::set_attestation_policy),
            )
            .route(
                "/reference-value",
                web::post().to(admin::register_reference_value),
            )
            .route(
                "/reference-value/{name:.*}",
                web::get().to(admin::get_reference_value),
            )
            .default_service(web::to(error::plugin_not_found)),
    )
    .service(
        web::scope("/coffer/v1")
            .route("/policies/{id}", web::get().to(admin::get_policy))
            .route("/audit", web::get().to(admin::audit))
            .default_service(web::to(error::not_found)),
    )
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/.well-known/jwks.json", web::get().to(ops::jwks))
    .default_service(web::to(error::not_found));
}

/// Builds the actix `App` for `state` (used by the binary and by tests).
pub fn app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics_state = state.clone();
    actix_web::App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(usize::MAX))
        .wrap_fn(move |req, srv| {
            let started = Instant::now();
            let method = req.method().to_string();
            let st = metrics_state.clone();
            srv.call(req).map(move |res| {
                if let Ok(res) = &res {
                    if let Some(e) = res.response().extensions().get::<KbsError>() {
                        tracing::info!(
                            method = %method,
                            path = %res.request().path(),
                            status = res.status().as_u16(),
                            kind = e.kind.name(),
                            reason = %e.detail,
                            "request refused"
                        );
                    }
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into());
                    let m = &st.kbs.metrics;
                    m.requests
                        .with_label_values(&[&route, &method, res.status().as_str()])
                        .inc();
                    m.latency
                        .with_label_values(&[&route])
                        .observe(started.elapsed().as_secs_f64());
                }
                res
            })
        })
        .configure(configure)
}

fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(coffer_protocol::messages::SESSION_COOKIE)
        .map(|c| c.value().to_string())
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
