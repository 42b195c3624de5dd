# coffer default appraisal policy for NVIDIA NVSwitches (policy id "default_switch"),
# applied to each switch's EAR submodule (switch0, ...). Same rules as default_gpu with the
# switch claim names; switches have a BIOS RIM and no driver RIM.
# Optional reference values: `allowed_switch_bios_versions`.
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

sw := input.nvidia

chain_good(chain) if {
	chain["x-nvidia-cert-ocsp-status"] == "good"
	chain["x-nvidia-cert-status"] == "valid"
}

hardware := 2 if {
	chain_good(sw["x-nvidia-switch-attestation-report-cert-chain"])
	sw["x-nvidia-switch-attestation-report-cert-chain-fwid-match"] == true
	sw["x-nvidia-switch-attestation-report-parsed"] == true
	sw["x-nvidia-switch-attestation-report-signature-verified"] == true
	sw["x-nvidia-switch-attestation-report-nonce-match"] == true
	sw["x-nvidia-switch-arch-check"] == true
}

executables := 3 if {
	chain_good(sw["x-nvidia-switch-bios-rim-cert-chain"])
	sw["x-nvidia-switch-bios-rim-fetched"] == true
	sw["x-nvidia-switch-bios-rim-schema-validated"] == true
	sw["x-nvidia-switch-bios-rim-signature-verified"] == true
	sw["x-nvidia-switch-bios-rim-version-match"] == true
	sw["x-nvidia-switch-bios-rim-measurements-available"] == true
	sw.measres == "success"
}

configuration := 2 if {
	sw.secboot == true
	sw.dbgstat == "disabled"
	sw["x-nvidia-switch-bios-version"] in query_reference_value("allowed_switch_bios_versions")
} else := 3 if {
	sw.secboot == true
	sw.dbgstat == "disabled"
}
