# Shared settings for hack/ scripts: where the cache lives and how to fail with one clear line.
# Sourced, never run.

KUBEFORGE_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kubeforge
KUBEFORGE_BIN=$KUBEFORGE_CACHE/bin
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$HACK_DIR")

die() {
  echo "kubeforge: $*" >&2
  exit 1
}
