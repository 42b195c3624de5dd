//! Resource policies: which `data` a policy sees for a request, in upstream Trustee's form
//! or in Alibaba Cloud's, and the verdict.
//!
//! Upstream's KBS gives a resource policy
//! `{"plugin":"resource","resource-path":["repo","type","tag"],"query":{...}}`; Alibaba's
//! gives `{"resource-path":"resource/repo/type/tag"}` (the plugin name first, as its actix
//! route builds the string) and its policies do `split(data["resource-path"], "/")`.

use std::str::FromStr;

use serde_json::{Map, Value};

use super::{PolicyEngine, PolicyError};

/// How `data["resource-path"]` is presented to resource policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResourcePathDialect {
    /// Upstream's array first; if evaluating the policy with it fails (a string built-in
    /// such as `split` given the array), the policy was written for Alibaba's KBS and its
    /// verdict on the string form is final.
    #[default]
    Auto,
    /// Always upstream's `{"plugin","resource-path":[..3],"query"}`.
    Upstream,
    /// Always Alibaba's `{"resource-path":"resource/<repo>/<type>/<tag>"}`.
    Alibaba,
}

impl ResourcePathDialect {
    /// Every accepted spelling, for `--help` and error messages.
    pub const NAMES: [&'static str; 3] = ["auto", "upstream", "alibaba"];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourcePathDialect::Auto => "auto",
            ResourcePathDialect::Upstream => "upstream",
            ResourcePathDialect::Alibaba => "alibaba",
        }
    }
}

/// A `resource_path_dialect` value that is none of [`ResourcePathDialect::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource-path dialect {0:?} (expected one of {names})", names = ResourcePathDialect::NAMES.join(", "))]
pub struct UnknownDialect(pub String);

impl FromStr for ResourcePathDialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, UnknownDialect> {
        match s {
            "auto" => Ok(ResourcePathDialect::Auto),
            "upstream" => Ok(ResourcePathDialect::Upstream),
            "alibaba" => Ok(ResourcePathDialect::Alibaba),
            other => Err(UnknownDialect(other.to_string())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ResourcePathDialect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The resource a request names, as the policy sees it.
#[derive(Debug, Clone)]
pub struct ResourceRequest<'a> {
    /// `repository`, `type`, `tag`.
    pub segments: [&'a str; 3],
    /// Query parameters (upstream's `data.query`; Alibaba's KBS does not pass them).
    pub query: Map<String, Value>,
}

impl ResourceRequest<'_> {
    /// Upstream's `data`.
    pub fn upstream_data(&self) -> Value {
        serde_json::json!({
            "plugin": "resource",
            "resource-path": self.segments,
            "query": self.query,
        })
    }

    /// Alibaba's `data`.
    pub fn alibaba_data(&self) -> Value {
        serde_json::json!({ "resource-path": format!("resource/{}", self.segments.join("/")) })
    }
}

/// A resource policy's decision and the `data` form that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceVerdict {
    /// `data.policy.allow` was `true`.
    pub allow: bool,
    /// [`ResourcePathDialect::Upstream`] or [`ResourcePathDialect::Alibaba`].
    pub dialect: ResourcePathDialect,
}

impl PolicyEngine {
    /// Evaluates resource policy `text` for `request` with token claims `input`, presenting
    /// the path as `dialect` says. A missing or non-boolean `allow` is a denial.
    pub fn allow_resource(
        &self,
        text: &str,
        input: &Value,
        request: &ResourceRequest<'_>,
        dialect: ResourcePathDialect,
    ) -> Result<ResourceVerdict, PolicyError> {
        let with = |d: ResourcePathDialect, data: Value| {
            self.allow(text, input, &data)
                .map(|allow| ResourceVerdict { allow, dialect: d })
        };
        match dialect {
            ResourcePathDialect::Upstream => {
                with(ResourcePathDialect::Upstream, request.upstream_data())
            }
            ResourcePathDialect::Alibaba => {
                with(ResourcePathDialect::Alibaba, request.alibaba_data())
            }
            ResourcePathDialect::Auto => {
                match with(ResourcePathDialect::Upstream, request.upstream_data()) {
                    Err(PolicyError::Eval(upstream)) => {
                        with(ResourcePathDialect::Alibaba, request.alibaba_data()).map_err(|e| {
                            PolicyError::Eval(format!(
                                "with the path as an array: {upstream}; as a string: {e}"
                            ))
                        })
                    }
                    other => other,
                }
            }
        }
    }
}
