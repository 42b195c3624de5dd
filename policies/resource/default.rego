# coffer default resource policy (policy id "resource-policy").
#
# Releases a resource to a production TEE on genuine Intel hardware whose token this server
# issued: a TDX TD that is not a debug TD, or an SGX enclave that is not a debug enclave,
# on a platform whose TCB is not revoked. Never to the development-only `sample` TEE, and
# never to a TEE type this policy does not know.
#
# Trade-off: it checks no measurement. It works without reference values (the PAI-EAS flow,
# where the operator registers none), so ANY non-debug TD on a genuine platform gets the
# resource, including one running an image the host chose. Pin what may run by registering
# reference values and uploading `coffer admin set-resource-policy --affirming` (or a policy
# of your own that checks measurements and the resource path).
#
# Confidential GPUs and NVSwitches: when the token carries device submodules (gpu0, ...,
# switch0, ...; only when the server verifies GPU evidence), each must be `affirming`
# under its device policy (default_gpu / default_switch): a genuine, unrevoked device
# whose measurements match NVIDIA's signed RIMs. Tokens without devices are unaffected.
#
# TCB statuses refused: `Revoked` only. `OutOfDate` (and the `...ConfigurationNeeded` /
# `SWHardeningNeeded` variants) is released, because cloud hosts often lag on microcode
# and the TD is still genuine; to refuse it too, add "OutOfDate" and
# "OutOfDateConfigurationNeeded" to `refused_tcb_statuses` below.
package policy

import rego.v1

default allow := false

refused_tcb_statuses := {"Revoked"}

evidence := input.submods.cpu0["ear.veraison.annotated-evidence"]

allow if {
	data.plugin == "resource"
	not evidence.sample
	production_tdx
	devices_affirming
}

allow if {
	data.plugin == "resource"
	not evidence.sample
	production_sgx
	devices_affirming
}

devices_affirming if {
	every name, submod in input.submods {
		device_affirming(name, submod)
	}
}

device_affirming(name, _) if name == "cpu0"

device_affirming(name, submod) if {
	name != "cpu0"
	submod["ear.status"] == "affirming"
}

# TDATTRIBUTES.DEBUG clear: the host cannot read the TD's memory.
production_tdx if {
	evidence.tdx.td_attributes.debug == false
	tcb_accepted(evidence.tdx.tcb_status)
}

# SGX ATTRIBUTES.DEBUG is bit 1 of the first (little-endian) byte of `attributes.flags`,
# i.e. the second hex digit.
production_sgx if {
	flags := evidence.sgx.body["attributes.flags"]
	count(flags) == 16
	not substring(flags, 1, 1) in sgx_debug_nibbles
	tcb_accepted(evidence.sgx.tcb_status)
}

sgx_debug_nibbles := {"2", "3", "6", "7", "a", "b", "e", "f", "A", "B", "E", "F"}

tcb_accepted(status) if {
	is_string(status)
	not status in refused_tcb_statuses
}
