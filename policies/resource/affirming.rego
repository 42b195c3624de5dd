# Releases a resource only when the attestation policy judged the TEE "affirming"
# (every trust-vector claim in the affirming tier or better), for the CPU and for every
# device submodule the token carries (gpu0, switch0, ...).
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.status"] == "affirming"
	every _, submod in input.submods {
		submod["ear.status"] == "affirming"
	}
}
