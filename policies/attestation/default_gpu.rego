# coffer default appraisal policy for NVIDIA GPUs (policy id "default_gpu"), applied to
# each GPU's EAR submodule (gpu0, gpu1, ...).
#
# Input: {"nvidia": {...}}: NVIDIA's claim names (x-nvidia-*, measres, secboot, dbgstat,
# ...) plus Trustee's local-verifier claims (arch, uuid, measurements, config).
# Output: trust_claims, as Trustee's ear_default_policy_gpu.rego, and stricter:
#   * the driver RIM's certificate chain must be valid and not revoked too (Trustee's
#     policy only checks the VBIOS RIM's chain);
#   * the RIMs' measurements must have no index conflict and the report nonce must match
#     (the server refuses a mismatching nonce anyway; the rule keeps the policy honest
#     when it is evaluated on claims from elsewhere, e.g. `coffer policy test`).
# Allowed driver / VBIOS versions are optional reference values
# (`allowed_driver_versions`, `allowed_vbios_versions`); without them a GPU whose
# measurements match NVIDIA's signed RIMs gets configuration 3 (still affirming).
package policy

import rego.v1

default hardware := 97

default executables := 33

default configuration := 36

trust_claims := {
	"instance-identity": 0,
	"configuration": configuration,
	"executables": executables,
	"file-system": 0,
	"hardware": hardware,
	"runtime-opaque": 0,
	"storage-opaque": 0,
	"sourced-data": 0,
}

gpu := input.nvidia

chain_good(chain) if {
	chain["x-nvidia-cert-ocsp-status"] == "good"
	chain["x-nvidia-cert-status"] == "valid"
}

# Genuine NVIDIA GPU, report signed by its certified firmware key, bound to this session.
hardware := 2 if {
	chain_good(gpu["x-nvidia-gpu-attestation-report-cert-chain"])
	gpu["x-nvidia-gpu-attestation-report-cert-chain-fwid-match"] == true
	gpu["x-nvidia-gpu-attestation-report-parsed"] == true
	gpu["x-nvidia-gpu-attestation-report-signature-verified"] == true
	gpu["x-nvidia-gpu-attestation-report-nonce-match"] == true
	gpu["x-nvidia-gpu-arch-check"] == true
}

rim_ok(name) if {
	chain_good(gpu[sprintf("x-nvidia-gpu-%s-rim-cert-chain", [name])])
	gpu[sprintf("x-nvidia-gpu-%s-rim-fetched", [name])] == true
	gpu[sprintf("x-nvidia-gpu-%s-rim-schema-validated", [name])] == true
	gpu[sprintf("x-nvidia-gpu-%s-rim-signature-verified", [name])] == true
	gpu[sprintf("x-nvidia-gpu-%s-rim-version-match", [name])] == true
	gpu[sprintf("x-nvidia-gpu-%s-rim-measurements-available", [name])] == true
}

# Driver and VBIOS measurements equal NVIDIA's signed reference values.
executables := 3 if {
	rim_ok("driver")
	rim_ok("vbios")
	gpu["x-nvidia-gpu-vbios-index-no-conflict"] == true
	gpu.measres == "success"
}

configuration := 2 if {
	gpu.secboot == true
	gpu.dbgstat == "disabled"
	gpu["x-nvidia-gpu-vbios-version"] in query_reference_value("allowed_vbios_versions")
	gpu["x-nvidia-gpu-driver-version"] in query_reference_value("allowed_driver_versions")
} else := 3 if {
	gpu.secboot == true
	gpu.dbgstat == "disabled"
}
