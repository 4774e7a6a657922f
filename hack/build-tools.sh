#!/usr/bin/env bash
# Builds the pinned control-plane tools from Go modules into ${XDG_CACHE_HOME:-~/.cache}/kubeforge/bin.
#
# Each tool has a wrapper module under hack/tools/<name>/ whose files (go.mod, go.sum, a main.go) are the pin.
# A tool is rebuilt only when that pin changes: its stamp file holds the hash of the wrapper's files.
# Usage: hack/build-tools.sh [k8s|etcd|kwok|helm|kind|coredns|local-path-provisioner ...]
# (default: the rig's k8s, etcd, kwok and helm; the rest only the kind path needs, and
# hack/kind-node-image.sh and hack/kind.sh build them)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || die "Go is not installed (needed to build the control plane; see README)"
mkdir -p "$KUBEFORGE_BIN" "$KUBEFORGE_CACHE/stamps" "$KUBEFORGE_CACHE/logs"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

module_version() { (cd "$HACK_DIR/tools/$1" && go list -m -f '{{.Version}}' "$2"); }

build_k8s() {
  local version minor date ldflags="-s -w" pkg
  # errexit does not apply inside a function called from a condition: check each step.
  version=$(module_version k8s k8s.io/kubernetes) && [ -n "$version" ] || return 1
  minor=$(echo "${version#v1.}" | cut -d. -f1)
  # The release's publication time makes the stamp reproducible, unlike the time of this build.
  # gitCommit stays empty: the module proxy records no VCS origin for k8s.io/kubernetes.
  date=$(go list -m -json k8s.io/kubernetes |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Time"])') || return 1
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  # The rig runs the control plane; a kind node image takes all seven (hack/kind-node-image.sh).
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ldflags" -o "$KUBEFORGE_BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

build_etcd() {
  go build -trimpath -ldflags="-s -w" -o "$KUBEFORGE_BIN/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  local module_dir stage
  go build -trimpath -ldflags="-s -w" -o "$KUBEFORGE_BIN/kwok" sigs.k8s.io/kwok/cmd/kwok || return 1
  # Standalone kwok has no default Stages; keep the upstream node and pod ones beside the binary.
  # pod-complete is left out on purpose: pods stay Running until a test decides (hack/kwok/).
  module_dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) || return 1
  mkdir -p "$KUBEFORGE_CACHE/share"
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-delete; do
    cat "$module_dir/kustomize/stage/$stage.yaml"
    echo "---"
  done >"$KUBEFORGE_CACHE/share/kwok-upstream-stages.yaml"
}

build_helm() {
  local version
  version=$(module_version helm helm.sh/helm/v4) && [ -n "$version" ] || return 1
  go build -trimpath -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
    -o "$KUBEFORGE_BIN/helm" helm.sh/helm/v4/cmd/helm
}

build_kind() {
  go build -trimpath -ldflags="-s -w" -o "$KUBEFORGE_BIN/kind" sigs.k8s.io/kind
}

# CoreDNS with only the plugins kubeadm's Corefile uses (hack/tools/coredns/main.go).
build_coredns() {
  go build -trimpath -ldflags="-s -w" -o "$KUBEFORGE_BIN/coredns" .
}

build_local-path-provisioner() {
  local version
  version=$(module_version local-path-provisioner github.com/rancher/local-path-provisioner) || return 1
  go build -trimpath -ldflags="-s -w -X main.VERSION=$version" -o "$KUBEFORGE_BIN/local-path-provisioner" \
    github.com/rancher/local-path-provisioner
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(k8s etcd kwok helm)
for tool in "${tools[@]}"; do
  dir=$HACK_DIR/tools/$tool
  [ -d "$dir" ] || die "unknown tool '$tool' (expected one of: $(cd "$HACK_DIR/tools" && echo *))"
  # go.mod, go.sum and any source of the wrapper (hack/tools/coredns/main.go), in name order.
  pin=$(cat "$dir"/* | sha256sum | cut -c1-16)
  stamp=$KUBEFORGE_CACHE/stamps/$tool
  [ "$(cat "$stamp" 2>/dev/null)" = "$pin" ] && continue
  log=$KUBEFORGE_CACHE/logs/build-$tool.log
  echo "kubeforge: building $tool (first time only; log: $log)" >&2
  start=$SECONDS
  if ! (cd "$dir" && "build_$tool") >"$log" 2>&1; then
    if grep -qE 'proxy|dial tcp|no such host|403|404' "$log"; then
      die "building $tool failed: the Go module proxy is unreachable or refused a module (read $log)"
    fi
    die "building $tool failed (read $log)"
  fi
  echo "$pin" >"$stamp"
  echo "kubeforge: built $tool in $((SECONDS - start)) s" >&2
done
