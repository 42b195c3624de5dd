# Releases every resource to every attested caller, sample TEE included. Testing only.
package policy

import rego.v1

default allow := true
