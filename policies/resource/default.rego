# coffer default resource policy (as Trustee's): release to any real TEE whose token this
# server issued, never to the development-only `sample` TEE. Replace it with a policy that
# checks ear.status and the resource path before production use.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
