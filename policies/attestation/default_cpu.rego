# coffer default appraisal policy for CPU TEEs (policy id "default_cpu").
#
# Input: the verifier's claims as annotated evidence, e.g. input.sample or input.tdx, plus
# input.report_data, input.runtime_data_claims and input.init_data_claims.
# Output: trust_claims (EAR trustworthiness vector, AR4SI tier values) and extensions.
# Reference values are read with the query_reference_value("<name>") built-in.
# Semantics follow Trustee's default CPU policy, so reference values registered for Trustee
# work here unchanged.
package policy

import rego.v1

# AR4SI values used below:
#   executables   3 approved boot chain, 4 approved but incomplete, 33 unrecognised
#   hardware      2 genuine, 97 unrecognised
#   configuration 2 approved, 36 unavailable
#   0             no assertion
default executables := 33

default hardware := 97

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

# ---- sample (development only) ----

executables := 3 if {
	input.sample
	input.sample.launch_digest in query_reference_value("launch_digest")
}

hardware := 2 if {
	input.sample
	input.sample.svn in query_reference_value("svn")
	input.sample.platform_version.major == query_reference_value("major_version")
	input.sample.platform_version.minor >= query_reference_value("minimum_minor_version")
}

configuration := 2 if {
	input.sample
	input.sample.debug == false
}

# ---- Intel TDX ----

executables := 3 if {
	tdx_rtmrs_approved
	tdx_kernel_event_approved
	tdx_cmdline_event_approved
} else := 4 if {
	tdx_rtmrs_approved
}

tdx_rtmrs_approved if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	input.tdx.quote.body.rtmr_2 in query_reference_value("rtmr_2")
}

tdx_kernel_event_approved if {
	some ev in input.tdx.uefi_event_logs
	ev.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"
	"File(kernel)" in ev.details.device_paths
	some d in ev.digests
	matches_reference(d.digest, "tdvfkernel")
}

tdx_cmdline_event_approved if {
	some ev in input.tdx.uefi_event_logs
	ev.type_name == "EV_EVENT_TAG"
	ev.details.string == "LOADED_IMAGE::LoadOptions"
	some d in ev.digests
	matches_reference(d.digest, "tdvfkernelparams")
}

hardware := 2 if {
	input.tdx
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input.tdx.quote.body.mr_td in query_reference_value("mr_td")
	input.tdx.tcb_status == "UpToDate"
	input.tdx.collateral_expiration_status == "0"
}

configuration := 2 if {
	input.tdx
	input.tdx.td_attributes.debug == false
	input.tdx.quote.body.xfam in query_reference_value("xfam")
}

# A reference value is either one string or a list of accepted strings.
matches_reference(v, name) if v == query_reference_value(name)

matches_reference(v, name) if v in query_reference_value(name)

# ---- extensions ----

extensions := [{
	"name": "ear.trustee.identifiers",
	"key": -18,
	"value": {"validated": identifiers},
}]

identifiers := {"container_images": images} if {
	images := [img |
		some c in input.init_data_claims.agent_policy_claims.containers
		img := c.OCI.Annotations["io.kubernetes.cri.image-name"]
	]
	count(images) > 0
} else := {}
