//! The verification procedure, in two steps:
//!
//! 1. [`GpuVerifier::authenticate`]: what always fails an attestation — the report parses,
//!    its chain leads to the pinned root, the leaf's key signed it, the leaf certifies the
//!    report's FWID, and the request nonce is the session's. Cheap and offline; it runs
//!    before any collateral is fetched for the device.
//! 2. [`Authenticated::appraise`]: what policy decides on — revocation of the device
//!    chain, the driver and VBIOS RIMs (signature, chain, revocation, version,
//!    measurements) — producing the claims NVIDIA's verifiers name (`x-nvidia-*`,
//!    `measres`, `secboot`, `dbgstat`, ...) next to Trustee's local-verifier claims
//!    (`arch`, `uuid`, `measurements`, `config`). Missing or stale collateral is named in
//!    `x-nvidia-attestation-warning`, never silently treated as good.

use std::collections::HashMap;

use openssl::x509::X509;
use serde_json::{json, Map, Value};

use crate::chain::{self, ChainError, DeviceRoot, VerifiedChain};
use crate::evidence::{Arch, DeviceEvidence};
use crate::opaque::kind;
use crate::report::{Report, ReportError};
use crate::revocation::{chain_status, ChainStatus};
use crate::rim::{self, Rim};

/// Length of the SPDM request nonce.
pub const NONCE_LEN: usize = 32;

/// Why a device's evidence is refused outright (never a policy matter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The report does not parse.
    #[error("{device}: {source}")]
    Report {
        /// Which device.
        device: String,
        /// Parser error.
        source: ReportError,
    },
    /// The report lacks the driver or VBIOS version a GPU report always carries.
    #[error("{device}: report lacks opaque record {kind} ({name})")]
    Incomplete {
        /// Which device.
        device: String,
        /// Record type.
        kind: u16,
        /// Meaning.
        name: &'static str,
    },
    /// The certificate chain is refused.
    #[error("{device}: {source}")]
    Chain {
        /// Which device.
        device: String,
        /// Chain error.
        source: ChainError,
    },
    /// The report's signature does not verify with the leaf certificate's key.
    #[error("{device}: report signature does not verify with the attestation certificate")]
    Signature {
        /// Which device.
        device: String,
    },
    /// The report answers another challenge.
    #[error("{device}: report nonce {found} is not this session's {expected}")]
    Nonce {
        /// Which device.
        device: String,
        /// Expected nonce (hex).
        expected: String,
        /// Nonce in the report (hex).
        found: String,
    },
    /// The report's FWID differs from the one the leaf certificate certifies.
    #[error("{device}: report FWID differs from the attestation certificate's")]
    Fwid {
        /// Which device.
        device: String,
    },
}

/// Verifies devices against pinned roots.
#[derive(Debug, Clone)]
pub struct GpuVerifier {
    device_root: DeviceRoot,
    rim_root: X509,
}

impl GpuVerifier {
    /// NVIDIA's production roots.
    pub fn nvidia() -> Self {
        GpuVerifier {
            device_root: DeviceRoot::nvidia(),
            // A known-good PEM certificate, checked by a unit test.
            rim_root: X509::from_pem(crate::NVIDIA_RIM_ROOT_PEM).expect("built-in RIM root parses"),
        }
    }

    /// Other roots (tests, private PKIs): PEM of the device root and the RIM root.
    pub fn with_roots(device_root_pem: &[u8], rim_root_pem: &[u8]) -> Result<Self, ChainError> {
        Ok(GpuVerifier {
            device_root: DeviceRoot::from_pem(device_root_pem)?,
            rim_root: X509::from_pem(rim_root_pem)
                .map_err(|e| ChainError::Malformed(format!("RIM root: {e}")))?,
        })
    }

    /// Step 1 for device number `index`: report, chain, signature, FWID and the
    /// `expected` nonce (the first 32 bytes of the runtime-data hash).
    pub fn authenticate(
        &self,
        index: usize,
        evidence: DeviceEvidence,
        expected: &[u8],
    ) -> Result<Authenticated, GpuError> {
        let device = format!(
            "{} {index} ({}, uuid {})",
            if evidence.arch.is_gpu() {
                "GPU"
            } else {
                "NVSwitch"
            },
            evidence.arch.claim_name(),
            evidence.uuid
        );
        let report = Report::parse(&evidence.report).map_err(|source| GpuError::Report {
            device: device.clone(),
            source,
        })?;
        if evidence.arch.is_gpu() {
            for (k, name) in [
                (kind::DRIVER_VERSION, "driver version"),
                (kind::VBIOS_VERSION, "VBIOS version"),
            ] {
                if report.opaque().get(k).is_none() {
                    return Err(GpuError::Incomplete {
                        device,
                        kind: k,
                        name,
                    });
                }
            }
        }
        let chain = chain::verify_chain(&evidence.certificate_pem, &self.device_root).map_err(
            |source| GpuError::Chain {
                device: device.clone(),
                source,
            },
        )?;
        if !crate::signature::verify_raw_p384(
            &chain.leaf_key,
            report.signed_bytes(),
            report.signature(),
        ) {
            return Err(GpuError::Signature { device });
        }
        let want = &expected[..expected.len().min(NONCE_LEN)];
        if report.request_nonce() != want {
            return Err(GpuError::Nonce {
                device,
                expected: hex::encode(want),
                found: hex::encode(report.request_nonce()),
            });
        }
        // NVIDIA's verifier treats an absent FWID record as a match: the signature by the
        // certified alias key already ties the report to the firmware.
        if report
            .opaque()
            .fwid()
            .is_some_and(|f| f != chain.fwid.as_slice())
        {
            return Err(GpuError::Fwid { device });
        }
        Ok(Authenticated {
            device,
            evidence,
            chain,
        })
    }

    /// The device root.
    pub fn device_root(&self) -> &X509 {
        self.device_root.cert()
    }

    /// The RIM root.
    pub fn rim_root(&self) -> &X509 {
        &self.rim_root
    }
}

/// A device whose evidence is authentic and bound to the session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    device: String,
    evidence: DeviceEvidence,
    chain: VerifiedChain,
}

/// Collateral handed to [`Authenticated::appraise`].
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    /// DER OCSP responses (any order; matched by certificate id).
    pub ocsp: Vec<Vec<u8>>,
    /// RIM XML by RIM id.
    pub rims: HashMap<String, String>,
    /// Why some collateral could not be obtained (shown in the warning claim).
    pub problems: Vec<String>,
}

fn rfc3339(t: i64) -> Value {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| json!(d.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

fn chain_claim(status: &ChainStatus, not_before: i64, not_after: i64, now: i64) -> Value {
    json!({
        "x-nvidia-cert-status": if (not_before..not_after).contains(&now) { "valid" } else { "expired" },
        "x-nvidia-cert-ocsp-status": status.ocsp_status,
        "x-nvidia-cert-expiration-date": rfc3339(not_after),
        "x-nvidia-cert-revocation-reason": status.reason,
    })
}

/// Outcome of one RIM's checks.
struct RimOutcome {
    rim: Option<Rim>,
    claims: Map<String, Value>,
    usable: bool,
}

impl Authenticated {
    /// The device's name in messages (`GPU 0 (Hopper, uuid ...)`).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.evidence.arch
    }

    /// The validated device chain.
    pub fn chain(&self) -> &VerifiedChain {
        &self.chain
    }

    /// The report, parsed again from the bytes [`GpuVerifier::authenticate`] accepted.
    pub fn report(&self) -> Result<Report<'_>, ReportError> {
        Report::parse(&self.evidence.report)
    }

    /// Ids of the RIMs this device needs: (driver, firmware). NVSwitches have no driver
    /// RIM.
    pub fn rim_ids(&self) -> (Option<String>, Option<String>) {
        let Ok(report) = self.report() else {
            return (None, None);
        };
        let o = report.opaque();
        let get = |k| o.ascii(k).unwrap_or_default();
        let fw_version = o.vbios_version().replace('.', "");
        let driver = match self.evidence.arch {
            Arch::Hopper => Some(format!("NV_GPU_DRIVER_GH100_{}", o.driver_version())),
            Arch::Blackwell => Some(format!(
                "NV_GPU_CC_DRIVER_{}_{}",
                o.ascii(kind::CHIP_INFO).unwrap_or_else(|| "GB100".into()),
                o.driver_version()
            )),
            Arch::Ls10 => None,
        };
        let prefix = if self.evidence.arch.is_gpu() {
            "NV_GPU_VBIOS"
        } else {
            "NV_SWITCH_BIOS"
        };
        let firmware = format!(
            "{prefix}_{}_{}_{}_{fw_version}",
            get(kind::PROJECT),
            get(kind::PROJECT_SKU),
            get(kind::CHIP_SKU)
        );
        (driver, Some(firmware))
    }

    fn check_rim(
        &self,
        id: Option<&str>,
        want_version: &str,
        verifier: &GpuVerifier,
        collateral: &Collateral,
        now: i64,
        warnings: &mut Vec<String>,
    ) -> RimOutcome {
        let mut c = Map::new();
        for k in [
            "fetched",
            "schema-validated",
            "signature-verified",
            "version-match",
            "measurements-available",
        ] {
            c.insert(k.into(), json!(false));
        }
        c.insert("cert-chain".into(), Value::Null);
        let mut out = RimOutcome {
            rim: None,
            claims: c,
            usable: false,
        };
        let Some(id) = id else { return out };
        let Some(text) = collateral.rims.get(id) else {
            warnings.push(format!(
                "RIM {id} is not available; load it or enable fetching"
            ));
            return out;
        };
        out.claims.insert("fetched".into(), json!(true));
        let rim = match Rim::parse(id, text) {
            Ok(r) => r,
            Err(e) => {
                warnings.push(e.to_string());
                return out;
            }
        };
        // Structure as this verifier reads it (SWID root, Meta, Payload of measurement
        // resources); no XSD validation, as in NVIDIA's own local verifier.
        out.claims.insert("schema-validated".into(), json!(true));
        let sig_ok = match rim.verify_signature() {
            Ok(()) => true,
            Err(e) => {
                warnings.push(e.to_string());
                false
            }
        };
        out.claims
            .insert("signature-verified".into(), json!(sig_ok));
        let chain_ok = match rim::verify_rim_chain(&rim, &verifier.rim_root) {
            Ok((not_after, not_before)) => {
                let status = chain_status(&rim.certs, &verifier.rim_root, 0, &collateral.ocsp, now);
                warnings.extend(status.problems.iter().map(|p| format!("RIM {id}: {p}")));
                out.claims.insert(
                    "cert-chain".into(),
                    chain_claim(&status, not_before, not_after, now),
                );
                status.ocsp_status != "revoked"
            }
            Err(e) => {
                warnings.push(e.to_string());
                false
            }
        };
        let version_ok = rim.version.eq_ignore_ascii_case(want_version);
        if !version_ok {
            warnings.push(format!(
                "RIM {id} is for version {}, the device runs {want_version}",
                rim.version
            ));
        }
        out.claims.insert("version-match".into(), json!(version_ok));
        let available = rim.measurements.iter().any(|g| g.active);
        out.claims
            .insert("measurements-available".into(), json!(available));
        out.usable = sig_ok && chain_ok && version_ok && available;
        out.rim = Some(rim);
        out
    }

    /// Step 2: the claims policy sees for this device, at unix time `now`.
    pub fn appraise(&self, verifier: &GpuVerifier, collateral: &Collateral, now: i64) -> Value {
        let Ok(report) = self.report() else {
            return Value::Null;
        };
        let o = report.opaque();
        let arch = self.evidence.arch;
        let (class, fw) = if arch.is_gpu() {
            ("gpu", "vbios")
        } else {
            ("switch", "bios")
        };
        let mut warnings = collateral.problems.clone();
        let mut m = Map::new();
        // Trustee's local-verifier claims.
        m.insert("arch".into(), json!(arch.claim_name()));
        m.insert("uuid".into(), json!(self.evidence.uuid));
        let measurements: Map<String, Value> = report
            .measurements()
            .iter()
            .map(|b| (b.index.to_string(), json!(hex::encode(b.value))))
            .collect();
        m.insert("measurements".into(), Value::Object(measurements));
        m.insert("config".into(), Value::Object(o.config_claims()));

        // NVIDIA's claims (names of NRAS / NVAT claims version 3.0).
        let hwmodel = chain::hwmodel(&self.chain).unwrap_or_default();
        let chip = match arch {
            Arch::Hopper => "GH100",
            Arch::Blackwell => "GB",
            Arch::Ls10 => "LS10",
        };
        let x = |s: &str| format!("x-nvidia-{class}-{s}");
        m.insert(x("arch-check"), json!(hwmodel.starts_with(chip)));
        for k in [
            "attestation-report-parsed",
            "attestation-report-signature-verified",
            "attestation-report-nonce-match",
            "attestation-report-cert-chain-fwid-match",
        ] {
            m.insert(x(k), json!(true));
        }
        let device_status = chain_status(
            &self.chain.certs,
            verifier.device_root.cert(),
            1,
            &collateral.ocsp,
            now,
        );
        warnings.extend(
            device_status
                .problems
                .iter()
                .map(|p| format!("device chain: {p}")),
        );
        m.insert(
            x("attestation-report-cert-chain"),
            chain_claim(
                &device_status,
                self.chain.not_before,
                self.chain.not_after,
                now,
            ),
        );

        let (driver_id, fw_id) = self.rim_ids();
        let driver_version = o.driver_version();
        let fw_version = o.vbios_version();
        let driver = self.check_rim(
            driver_id.as_deref(),
            &driver_version,
            verifier,
            collateral,
            now,
            &mut warnings,
        );
        let firmware = self.check_rim(
            fw_id.as_deref(),
            &fw_version,
            verifier,
            collateral,
            now,
            &mut warnings,
        );
        for (name, outcome) in [("driver", &driver), (fw, &firmware)] {
            if name == "driver" && !arch.is_gpu() {
                continue;
            }
            for (k, v) in &outcome.claims {
                m.insert(x(&format!("{name}-rim-{k}")), v.clone());
            }
        }
        if arch.is_gpu() {
            m.insert(x("driver-version"), json!(driver_version));
        }
        m.insert(x(&format!("{fw}-version")), json!(fw_version));

        let measured = |i: u32| {
            u8::try_from(i)
                .ok()
                .and_then(|i| report.measurement(i))
                .map(|b| b.value)
        };
        let empty = Rim::empty();
        let (driver_rim, fw_rim) = (
            if arch.is_gpu() {
                driver.rim.as_ref()
            } else {
                Some(&empty)
            },
            firmware.rim.as_ref(),
        );
        let both_usable = firmware.usable && (driver.usable || !arch.is_gpu());
        let mut success = false;
        let mut mismatches = Value::Null;
        if let (Some(d), Some(v)) = (driver_rim, fw_rim) {
            match rim::compare(d, v, measured, o.nvdec0_status()) {
                Ok(found) => {
                    m.insert(x(&format!("{fw}-index-no-conflict")), json!(true));
                    success = both_usable && found.is_empty();
                    if !found.is_empty() {
                        warnings.push(format!(
                            "{} measurement(s) differ from the RIMs",
                            found.len()
                        ));
                        mismatches = serde_json::to_value(found).unwrap_or(Value::Null);
                    }
                }
                Err(e) => {
                    m.insert(
                        x(&format!("{fw}-index-no-conflict")),
                        json!(!matches!(e, rim::CompareError::IndexConflict(_))),
                    );
                    warnings.push(e.to_string());
                }
            }
        } else {
            m.insert(x(&format!("{fw}-index-no-conflict")), Value::Null);
        }
        m.insert(
            "measres".into(),
            json!(if success { "success" } else { "failure" }),
        );
        m.insert(
            "secboot".into(),
            if success { json!(true) } else { Value::Null },
        );
        m.insert(
            "dbgstat".into(),
            if success {
                json!("disabled")
            } else {
                Value::Null
            },
        );
        m.insert("x-nvidia-mismatch-measurement-records".into(), mismatches);
        m.insert("hwmodel".into(), json!(hwmodel));
        m.insert("ueid".into(), json!(chain::ueid(&self.chain)));
        let oemid = firmware
            .rim
            .as_ref()
            .or(driver.rim.as_ref())
            .and_then(|r| r.manufacturer_id.clone());
        m.insert("oemid".into(), json!(oemid));
        m.insert(
            "eat_nonce".into(),
            json!(hex::encode(report.request_nonce())),
        );
        m.insert("x-nvidia-device-type".into(), json!(class));
        m.insert(x("claims-version"), json!("3.0"));
        if arch.is_gpu() {
            m.insert(x("switch-pdis"), json!(o.switch_pdis()));
        }
        m.insert(
            "x-nvidia-attestation-warning".into(),
            if warnings.is_empty() {
                Value::Null
            } else {
                json!(warnings.join("; "))
            },
        );
        Value::Object(m)
    }
}
