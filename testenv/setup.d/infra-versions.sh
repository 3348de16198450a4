# Terraform providers plumb's infrastructure-as-code tests run against, built
# from their Go modules into a Terraform-layout mirror by 20-infra. Sourced;
# not executable. Each line: NAME NAMESPACE MIRROR_VERSION GO_PACKAGE@VERSION.
#
# null, random and local declare the legacy module path
# github.com/terraform-providers/terraform-provider-NAME and have no valid Go
# module tags past v1; the proxy serves pseudo-versions of current code, which
# are pinned here. hashicorp/null and hashicorp/tfcoremock are not served by
# the module proxy this project can reach (403 for every version but null's
# pre-0.12 v1.0.0), so plumbtest (testenv/fixtures, built with HashiCorp's
# terraform-plugin-framework) stands in for the protocol-6 provider.
PLUMB_TF_PROVIDERS=(
  "random hashicorp 1.3.2-0.20260824155315-e1092b0cfc07 github.com/terraform-providers/terraform-provider-random@v1.3.2-0.20260824155315-e1092b0cfc07"
  "local hashicorp 1.4.1-0.20260513075820-3561e410f9fe github.com/terraform-providers/terraform-provider-local@v1.4.1-0.20260513075820-3561e410f9fe"
  "time hashicorp 0.14.2 github.com/hashicorp/terraform-provider-time@v0.14.2"
  "plumbtest plumb 0.1.0 fixture:terraform-provider-plumbtest"
)
PLUMB_POSTGRES_BIN=/usr/lib/postgresql/15/bin
PLUMB_CACHE="${PLUMB_CACHE:-$HOME/.cache/plumb}"
# The mirror directory is keyed by the pins above (and the fixture's source).
plumb_tf_mirror() {
  local here key
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  key="$( { printf '%s\n' "${PLUMB_TF_PROVIDERS[@]}"; cat "$here/../fixtures/terraform-provider-plumbtest/"*.go "$here/../fixtures/terraform-provider-plumbtest/go.mod"; } | sha256sum | cut -c1-12)"
  echo "$PLUMB_CACHE/tfmirror-$key"
}
