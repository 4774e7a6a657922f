#!/usr/bin/env bash
# The e2e tier on a real cluster: `make e2e-kind`.
#
# hack/kind.sh up makes the kind cluster with kubeforge's images and chart (where no kind node
# image can be had it stops there, with one line and exit status 3), then tests/images checks the
# images it built (make test skips them where Docker is not up yet, as in .ci/run) and tests/e2e
# runs against the cluster with KUBEFORGE_KUBECONFIG and KUBEFORGE_KIND_HOST_IP from its env file. At the end the
# cluster is deleted (hack/kind.sh down) unless KUBEFORGE_KEEP_CLUSTER=1, to look at it or to run
# the tests again quickly.
# Usage: [KIND_NODE_IMAGE=...] [BASE_IMAGE=...] hack/e2e-kind.sh [pytest arguments]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ -z "${KUBEFORGE_KEEP_CLUSTER:-}" ]; then
  trap '"$HACK_DIR/kind.sh" down' EXIT
fi
"$HACK_DIR/kind.sh" up
source "$KUBEFORGE_CACHE/kind/env"
cd "$REPO_ROOT"
.venv/bin/python -m pytest tests/images tests/e2e "$@"
