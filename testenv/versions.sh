# Versions of the real components plumb's tests run against. Sourced by the
# testenv scripts and .ci/run; the cache under ~/.cache/plumb is keyed by them.
PLUMB_K8S_VERSION=v1.34.4
PLUMB_ETCD_VERSION=v3.6.16
PLUMB_KUSTOMIZE_VERSION=v5.7.1
PLUMB_HELM_VERSION=v3.19.5
PLUMB_CACHE="${PLUMB_CACHE:-$HOME/.cache/plumb}"
