//! Prometheus metrics: requests, latencies, attestation outcomes and releases.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The server's metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// `coffer_http_requests_total{route,method,status}`.
    pub requests: IntCounterVec,
    /// `coffer_http_request_duration_seconds{route}`.
    pub latency: HistogramVec,
    /// `coffer_attestations_total{tee,outcome}` (issued, refused, replay, session_limit).
    pub attestations: IntCounterVec,
    /// `coffer_resource_releases_total{decision}` (allow, deny, not_found).
    pub releases: IntCounterVec,
    /// `coffer_audit_write_failures_total`.
    pub audit_failures: IntCounter,
    /// `coffer_kms_requests_total{outcome}`: ok, not_found, refused, retry, unavailable.
    pub kms_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "coffer_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "coffer_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let attestations = IntCounterVec::new(
            Opts::new(
                "coffer_attestations_total",
                "Attestation attempts by TEE and outcome",
            ),
            &["tee", "outcome"],
        )
        .expect("static metric definition");
        let releases = IntCounterVec::new(
            Opts::new(
                "coffer_resource_releases_total",
                "Resource requests by decision",
            ),
            &["decision"],
        )
        .expect("static metric definition");
        let audit_failures = IntCounter::new(
            "coffer_audit_write_failures_total",
            "Audit rows that could not be written",
        )
        .expect("static metric definition");
        let kms_requests = IntCounterVec::new(
            Opts::new(
                "coffer_kms_requests_total",
                "Aliyun KMS requests by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(kms_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(attestations.clone()),
            Box::new(releases.clone()),
            Box::new(audit_failures.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            requests,
            latency,
            attestations,
            releases,
            audit_failures,
            kms_requests,
        }
    }

    /// Prometheus text exposition; an error (never a partial or empty page) when the
    /// registry cannot be encoded.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
