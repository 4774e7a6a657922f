#!/usr/bin/env bash
# A kind cluster running kubeforge from its chart and images: `make kind-up` / `make kind-down`.
#
#   hack/kind.sh up     1. a Docker daemon: the running one, or dockerd started (hack/docker.sh),
#                          and then recorded as started by this script;
#                       2. the node image: KIND_NODE_IMAGE; else the one hack/kind-node-image.sh
#                          built here for the pinned Kubernetes; else the pinned kind's default,
#                          pulled. With none of them, one line and exit status 3;
#                       3. kind and helm from their Go modules (hack/build-tools.sh);
#                       4. the cluster $CLUSTER: one control plane and KUBEFORGE_KIND_WORKERS workers
#                          (default 1), the kubelet allowed on a cgroup v1 host, a node NotReady
#                          after KUBEFORGE_KIND_NODE_MONITOR_GRACE (default 20s) without a
#                          heartbeat; kept if it exists;
#                       5. kubeforge's images (hack/images.sh) loaded into the workers;
#                       6. the chart (charts/kubeforge) installed with those images, and awaited.
#   hack/kind.sh down   deletes the cluster, and stops dockerd if `up` started it.
#
# The cluster's kubeconfig and an env file to source are in ${XDG_CACHE_HOME:-~/.cache}/kubeforge/kind/.
# The env file gives KUBECONFIG and KUBEFORGE_KUBECONFIG, the release (KUBEFORGE_HELM_RELEASE,
# KUBEFORGE_HELM_NAMESPACE), and KUBEFORGE_KIND_HOST_IP: the address of this machine on kind's
# Docker network, where pods reach servers that the tests start here (listen on it, not 127.0.0.1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/images.env"

CLUSTER=${KUBEFORGE_KIND_CLUSTER:-kubeforge-e2e}
WORKERS=${KUBEFORGE_KIND_WORKERS:-1}
# How long a node may go without a heartbeat before the node lifecycle controller marks it
# NotReady (Kubernetes' default is 40 s; its kubelet renews its lease every 10 s): shortened so
# that the chaos tests' lost nodes are seen as lost quickly.
NODE_MONITOR_GRACE=${KUBEFORGE_KIND_NODE_MONITOR_GRACE:-20s}
STATE_DIR=$KUBEFORGE_CACHE/kind
KUBECONFIG_FILE=$STATE_DIR/kubeconfig
ENV_FILE=$STATE_DIR/env
STARTED_DOCKERD=$STATE_DIR/started-dockerd
RELEASE=kubeforge
RELEASE_NAMESPACE=kubeforge-system
NO_NODE_IMAGE=3

module_value() { (cd "$HACK_DIR/tools/$1" && GOTOOLCHAIN=local go list -m -f "{{.$3}}" "$2"); }

# The node image to run, or nothing.
node_image() {
  local local_image default_image
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then
    echo "$KIND_NODE_IMAGE"
    return
  fi
  local_image=kubeforge.local/kind-node:$(module_value k8s k8s.io/kubernetes Version)
  if docker image inspect "$local_image" >/dev/null 2>&1; then
    echo "$local_image"
    return
  fi
  # The pinned kind's default, read from its module so that it follows the pin.
  default_image=$(sed -n 's/^const Image = "\(.*\)"$/\1/p' \
    "$(module_value kind sigs.k8s.io/kind Dir)/pkg/apis/config/defaults/image.go")
  if docker image inspect "$default_image" >/dev/null 2>&1 ||
    docker pull "$default_image" >"$STATE_DIR/pull.log" 2>&1; then
    echo "$default_image"
  fi
}

# Whether this machine withholds CAP_SYS_RESOURCE (bit 24) from every process's bounding set.
no_sys_resource() { ((($((16#$(awk '/^CapBnd/ {print $2}' /proc/self/status))) & (1 << 24)) == 0)); }

# Where CAP_SYS_RESOURCE is withheld, kind's --privileged nodes cannot start with plain runc: make
# a wrapper that drops that one capability dockerd's default runtime (daemon.json, then SIGHUP,
# which reloads runtimes without touching running containers).
privileged_runtime() {
  no_sys_resource || return 0
  local wrapper=$KUBEFORGE_CACHE/docker/runc-without-sys-resource config=/etc/docker/daemon.json
  mkdir -p "$(dirname "$wrapper")" && cp "$HACK_DIR/kind/runc-without-sys-resource" "$wrapper"
  [ "$(docker info -f '{{.DefaultRuntime}}')" = kubeforge-runc ] && return 0
  [ ! -s "$config" ] || die "$config exists: add to it the runtime kubeforge-runc ($wrapper) as the" \
    "default runtime (CAP_SYS_RESOURCE is withheld on this machine, so --privileged fails)"
  echo "{\"runtimes\": {\"kubeforge-runc\": {\"path\": \"$wrapper\"}}, \"default-runtime\": \"kubeforge-runc\"}" >"$config"
  kill -HUP "$(pgrep -xo dockerd)"
  for _ in $(seq 10); do [ "$(docker info -f '{{.DefaultRuntime}}')" = kubeforge-runc ] && return 0; sleep 1; done
  die "dockerd did not take the runtime kubeforge-runc from $config"
}

cluster_config() {
  echo "kind: Cluster"
  echo "apiVersion: kind.x-k8s.io/v1alpha4"
  echo "nodes:"
  echo "- role: control-plane"
  for _ in $(seq "$WORKERS"); do echo "- role: worker"; done
  # Appended to the arguments kind gives kube-controller-manager (kubeadm v1beta4 lists them).
  echo "kubeadmConfigPatchesJSON6902:"
  echo "- {group: kubeadm.k8s.io, version: v1beta4, kind: ClusterConfiguration, patch: '[{op: add, path: /controllerManager/extraArgs/-, value: {name: node-monitor-grace-period, value: $NODE_MONITOR_GRACE}}]'}"
  # Kubernetes 1.35+ kubelets refuse cgroup v1 unless told otherwise (KEP-5573).
  # Without CAP_SYS_RESOURCE in the node, runc cannot lower a container's oom_score_adj below the
  # node's: containerd must clamp it, as for rootless nodes.
  if no_sys_resource; then
    echo "containerdConfigPatches:"
    echo "- |-"
    echo "  [plugins.\"io.containerd.grpc.v1.cri\"]"
    echo "    restrict_oom_score_adj = true"
  fi
  if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "kubeadmConfigPatches:"
    echo "- |"
    echo "  kind: KubeletConfiguration"
    echo "  failCgroupV1: false"
  fi
}

up() {
  mkdir -p "$STATE_DIR"
  if ! "$HACK_DIR/docker.sh" status; then
    "$HACK_DIR/docker.sh" up
    touch "$STARTED_DOCKERD"
  fi
  local image
  image=$(node_image)
  if [ -z "$image" ]; then
    echo "kubeforge: no kind node image: none built here and none can be pulled" \
      "(make kind-node-image builds one offline; or set KIND_NODE_IMAGE)" >&2
    exit "$NO_NODE_IMAGE"
  fi
  "$HACK_DIR/build-tools.sh" kind helm
  export PATH=$KUBEFORGE_BIN:$PATH
  privileged_runtime

  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    # Each node's kubelet and systemd take inotify instances; kind's known-issues page asks for 512.
    if [ "$(sysctl -n fs.inotify.max_user_instances)" -lt 512 ]; then
      sysctl -qw fs.inotify.max_user_instances=512 ||
        echo "kubeforge: fs.inotify.max_user_instances is low; a multi-node cluster may fail" >&2
    fi
    cluster_config >"$STATE_DIR/kind-config.yaml"
    echo "kubeforge: creating the kind cluster $CLUSTER from $image" >&2
    kind create cluster --name "$CLUSTER" --image "$image" --config "$STATE_DIR/kind-config.yaml" \
      --kubeconfig "$KUBECONFIG_FILE" --wait 5m
  fi
  local host_ip
  host_ip=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' |
    tr ' ' '\n' | grep -m1 -E '^[0-9.]+$') || die "kind's Docker network has no IPv4 gateway"
  {
    echo "export KUBECONFIG=$KUBECONFIG_FILE KUBEFORGE_KUBECONFIG=$KUBECONFIG_FILE"
    echo "export KUBEFORGE_KIND_HOST_IP=$host_ip"
    echo "export KUBEFORGE_HELM_RELEASE=$RELEASE KUBEFORGE_HELM_NAMESPACE=$RELEASE_NAMESPACE"
  } >"$ENV_FILE"

  "$HACK_DIR/images.sh"
  local images=() component workers
  for component in operator trainer crawler; do
    images+=("$KUBEFORGE_IMAGE_PREFIX/$component:$KUBEFORGE_IMAGE_TAG")
  done
  # Workload pods run on the workers only: loading the images there alone saves their disk space.
  workers=$(kind get nodes --name "$CLUSTER" | grep -- '-worker' | paste -sd, -)
  kind load docker-image --name "$CLUSTER" ${workers:+--nodes "$workers"} "${images[@]}"

  # The operator image's ID as a pod annotation: a rebuilt image under the same tag rolls the
  # operator when `up` runs again on a kept cluster.
  local operator_id
  operator_id=$(docker image inspect -f '{{.Id}}' "${images[0]}")
  helm upgrade --install "$RELEASE" "$REPO_ROOT/charts/kubeforge" --kubeconfig "$KUBECONFIG_FILE" \
    --namespace "$RELEASE_NAMESPACE" --create-namespace \
    --set "image.repository=$KUBEFORGE_IMAGE_PREFIX/operator" --set "image.tag=$KUBEFORGE_IMAGE_TAG" \
    --set-string "podAnnotations.kubeforge\.dev/image-id=$operator_id" \
    --wait --timeout 5m
  echo "kubeforge: kind cluster $CLUSTER is up with the chart installed (source $ENV_FILE)" >&2
}

down() {
  if command -v "$KUBEFORGE_BIN/kind" >/dev/null && "$HACK_DIR/docker.sh" status; then
    "$KUBEFORGE_BIN/kind" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE"
  fi
  rm -f "$ENV_FILE" "$KUBECONFIG_FILE"
  if [ -f "$STARTED_DOCKERD" ]; then
    "$HACK_DIR/docker.sh" down
    rm -f "$STARTED_DOCKERD"
  fi
}

case ${1:-up} in
up) up ;;
down) down ;;
*) die "usage: hack/kind.sh [up|down]" ;;
esac
