# Releases a resource only when the attestation policy judged the TEE "affirming"
# (every trust-vector claim in the affirming tier or better).
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.status"] == "affirming"
}
