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
use tracing::Instrument;

use crate::service::{Kbs, KbsError};

/// Shared state handed to every handler.
pub struct AppState {
    kbs: Arc<Kbs>,
    /// Largest accepted body, bytes.
    max_body_bytes: usize,
    /// Extra prefixes the KBS API is also served under (validated: `/x[/y...]`).
    path_prefixes: Vec<String>,
}

impl AppState {
    /// The state for serving `kbs` with the HTTP settings of `server` (body limit, path
    /// prefixes).
    pub fn new(kbs: Arc<Kbs>, server: &crate::config::ServerConfig) -> Self {
        AppState {
            kbs,
            max_body_bytes: server.max_body_bytes,
            path_prefixes: server.path_prefixes.clone(),
        }
    }
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
                "/attestation-policy/{id}",
                web::get().to(admin::get_attestation_policy),
            )
            .route(
                "/attestation-policy/{id}",
                web::delete().to(admin::delete_attestation_policy),
            )
            .route(
                "/attestation-policies",
                web::get().to(admin::list_attestation_policies),
            )
            .route("/resources", web::get().to(admin::list_resources))
            .route("/rvps/query", web::get().to(admin::rvps_query))
            .route("/rvps/register", web::post().to(admin::rvps_register))
            .route(
                "/rvps/set_reference_value_list",
                web::post().to(admin::rvps_set_reference_value_list),
            )
            .route(
                "/rvps/delete/{name:.*}",
                web::delete().to(admin::rvps_delete),
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
            .route("/audit/stats", web::get().to(admin::audit_stats))
            .route("/audit/{seq}", web::get().to(admin::audit_entry))
            .route("/resources", web::get().to(admin::resource_meta))
            .default_service(web::to(error::not_found)),
    )
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/openapi.json", web::get().to(ops::openapi))
    .route("/.well-known/jwks.json", web::get().to(ops::jwks))
    .default_service(web::to(error::not_found));
}

/// Builds the actix `App` for `state`: the routes of [`configure`], the path prefixes, and
/// one middleware that opens the request's span, records its metrics and logs its failure.
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
    let prefixes = state.path_prefixes.clone();
    // Handlers read bodies through `body::read` (problem+json 413 at the limit); the limit is
    // also actix's, so a handler that took `web::Bytes` or `String` instead would still be
    // bounded rather than buffer whatever a caller sends.
    let body_limit = state.max_body_bytes;
    actix_web::App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(body_limit))
        .wrap_fn(move |req, srv| {
            let started = Instant::now();
            let method = req.method().to_string();
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
            let session = req
                .cookie(coffer_protocol::messages::SESSION_COOKIE)
                .map(|c| crate::service::short_session_id(c.value()).to_string());
            let span = tracing::info_span!(
                "request",
                method = %method,
                route = %route,
                session = %session.as_deref().unwrap_or("-"),
            );
            let st = metrics_state.clone();
            let call = srv.call(req);
            async move {
                let res = call.await;
                if let Ok(res) = &res {
                    if let Some(e) = res
                        .response()
                        .error()
                        .and_then(|e| e.as_error::<KbsError>())
                    {
                        log_refusal(res.request().path(), res.status().as_u16(), e);
                    }
                    let m = st.kbs.metrics();
                    m.requests
                        .with_label_values(&[&route, &method, res.status().as_str()])
                        .inc();
                    m.latency
                        .with_label_values(&[&route])
                        .observe(started.elapsed().as_secs_f64());
                }
                res
            }
            .instrument(span)
        })
        // Registered last, so it runs first: routing, metrics and error details all see
        // the unprefixed path.
        .wrap_fn(move |mut req, srv| {
            if let Some(uri) = unprefixed_uri(req.uri(), &prefixes) {
                req.match_info_mut().get_mut().update(&uri);
                req.head_mut().uri = uri;
            }
            srv.call(req)
        })
        .configure(configure)
}

/// The one log line of a failed request: its error with every cause (the causes may name
/// database hosts or backend answers, which the problem body leaves out), as an error when
/// the server is at fault and as a refusal otherwise. Never secret material: no error type
/// carries any.
fn log_refusal(path: &str, status: u16, e: &KbsError) {
    let error: &(dyn std::error::Error + 'static) = e;
    if e.is_server_fault() {
        tracing::error!(path = %path, status, kind = e.kind().name(), error, "request failed");
    } else {
        tracing::info!(path = %path, status, kind = e.kind().name(), reason = %e, "request refused");
    }
}

/// Maps `<prefix>/kbs/v0/...` to `/kbs/v0/...` and, as Alibaba's gateway does,
/// `<prefix>/rvps/...` to `/kbs/v0/rvps/...`, keeping the raw path and the query. coffer's
/// own `/coffer/v1/...` and `/.well-known/jwks.json` follow too, so a client given
/// `--url https://host/<prefix>` reaches everything it uses. `None` when the path is under
/// no prefix; probes (`/healthz`, `/readyz`, `/metrics`) stay at the root.
fn unprefixed_uri(uri: &actix_web::http::Uri, prefixes: &[String]) -> Option<actix_web::http::Uri> {
    let path = uri.path();
    let rest = prefixes.iter().find_map(|p| {
        let rest = path.strip_prefix(p.as_str())?;
        let under = |root: &str| {
            rest.strip_prefix(root)
                .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        };
        if under("/kbs/v0") || under("/coffer/v1") || rest == "/.well-known/jwks.json" {
            Some(rest.to_string())
        } else {
            rest.strip_prefix("/rvps/")
                .map(|sub| format!("/kbs/v0/rvps/{sub}"))
        }
    })?;
    let pq = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    // The new path is a suffix of a path that parsed, so it parses; if not, serve unchanged.
    actix_web::http::Uri::builder()
        .path_and_query(pq)
        .build()
        .ok()
}

fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(coffer_protocol::messages::SESSION_COOKIE)
        .map(|c| c.value().to_string())
}

/// Alibaba's `Attestation: <jwt>` request header (an attestation token).
fn attestation_header(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("attestation")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::unprefixed_uri;

    #[test]
    fn prefixes_are_stripped_only_before_the_kbs_api() {
        let p = vec!["/api".to_string(), "/rel/x".to_string()];
        let map = |u: &str| unprefixed_uri(&u.parse().unwrap(), &p).map(|u| u.to_string());
        assert_eq!(
            map("/api/kbs/v0/resource/a/b/c?x=1").as_deref(),
            Some("/kbs/v0/resource/a/b/c?x=1")
        );
        assert_eq!(map("/rel/x/kbs/v0/auth").as_deref(), Some("/kbs/v0/auth"));
        // A release named `kbs`: its prefix does not capture the root API.
        let k = vec!["/kbs".to_string()];
        let kmap = |u: &str| unprefixed_uri(&u.parse().unwrap(), &k).map(|u| u.to_string());
        assert_eq!(kmap("/kbs/kbs/v0/auth").as_deref(), Some("/kbs/v0/auth"));
        assert_eq!(kmap("/kbs/v0/auth"), None);
        assert_eq!(kmap("/kbs/v0/resource/kbs/v0/x"), None);
        assert_eq!(
            map("/api/rvps/query").as_deref(),
            Some("/kbs/v0/rvps/query")
        );
        assert_eq!(map("/api/kbs/v0").as_deref(), Some("/kbs/v0"));
        assert_eq!(
            map("/api/coffer/v1/audit?after=1").as_deref(),
            Some("/coffer/v1/audit?after=1")
        );
        assert_eq!(
            map("/rel/x/.well-known/jwks.json").as_deref(),
            Some("/.well-known/jwks.json")
        );
        for none in [
            "/kbs/v0/auth",
            "/apix/kbs/v0/auth",
            "/api/kbs/v01",
            "/api/coffer/v10",
            "/api/healthz",
            "/api/metrics",
            "/rel/kbs/v0/auth",
        ] {
            assert_eq!(map(none), None, "{none}");
        }
    }
}
