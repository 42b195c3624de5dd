//! A short-lived in-process copy of what every handshake reads: the CPU appraisal policy,
//! the resource policy and the reference values. Three queries per handshake become one set
//! of queries per refresh interval. Writes through this process invalidate it at once;
//! writes through another replica are seen within the interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Kbs, KbsError};
use crate::policy::{
    defaults, ALIBABA_CPU_POLICY_ID, CPU_POLICY_ID, GPU_POLICY_ID, RESOURCE_POLICY_ID,
    SWITCH_POLICY_ID,
};

/// Policies and reference values as of one moment.
pub struct PolicySnapshot {
    /// Rego of the CPU appraisal policy: `default` (Alibaba's id) when stored, else
    /// `default_cpu`.
    pub cpu_policy: String,
    /// Which id `cpu_policy` came from.
    pub cpu_policy_id: &'static str,
    /// Rego of the GPU appraisal policy (`default_gpu`).
    pub gpu_policy: String,
    /// Rego of the NVSwitch appraisal policy (`default_switch`).
    pub switch_policy: String,
    /// Rego of the resource policy.
    pub resource_policy: String,
    /// Unexpired reference values.
    pub reference_values: Arc<HashMap<String, Value>>,
}

/// The cache slot.
#[derive(Default)]
pub struct SnapshotCache {
    slot: Mutex<Option<(Instant, Arc<PolicySnapshot>)>>,
    /// How long a snapshot is used; zero reads the database every time.
    pub max_age: Duration,
}

impl SnapshotCache {
    /// A cache whose snapshots live `max_age`.
    pub fn new(max_age: Duration) -> Self {
        SnapshotCache {
            slot: Mutex::new(None),
            max_age,
        }
    }

    /// Drops the current snapshot (after an admin write).
    pub fn invalidate(&self) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn fresh(&self) -> Option<Arc<PolicySnapshot>> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .filter(|(at, _)| at.elapsed() < self.max_age)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, taken_at: Instant, s: Arc<PolicySnapshot>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((taken_at, s));
    }
}

impl Kbs {
    /// The current policies and reference values.
    pub(crate) async fn snapshot(&self) -> Result<Arc<PolicySnapshot>, KbsError> {
        if let Some(s) = self.snapshots.fresh() {
            return Ok(s);
        }
        let taken_at = Instant::now();
        let text = |p: Option<crate::store::StoredPolicy>, d: &str| {
            p.map(|p| p.body).unwrap_or_else(|| d.to_string())
        };
        let (cpu_policy_id, cpu_policy) = match self.store.get_policy(ALIBABA_CPU_POLICY_ID).await?
        {
            Some(p) => (ALIBABA_CPU_POLICY_ID, p.body),
            None => (
                CPU_POLICY_ID,
                text(
                    self.store.get_policy(CPU_POLICY_ID).await?,
                    defaults::ATTESTATION_CPU,
                ),
            ),
        };
        let gpu_policy = text(
            self.store.get_policy(GPU_POLICY_ID).await?,
            defaults::ATTESTATION_GPU,
        );
        let switch_policy = text(
            self.store.get_policy(SWITCH_POLICY_ID).await?,
            defaults::ATTESTATION_SWITCH,
        );
        let resource_policy = text(
            self.store.get_policy(RESOURCE_POLICY_ID).await?,
            defaults::RESOURCE,
        );
        let reference_values = self
            .store
            .reference_values(self.clock.now_secs()?)
            .await?
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|v| (k, v)))
            .collect();
        let s = Arc::new(PolicySnapshot {
            cpu_policy,
            cpu_policy_id,
            gpu_policy,
            switch_policy,
            resource_policy,
            reference_values: Arc::new(reference_values),
        });
        if !self.snapshots.max_age.is_zero() {
            self.snapshots.put(taken_at, s.clone());
        }
        Ok(s)
    }
}
