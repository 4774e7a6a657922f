#!/bin/bash
# The pod network of kubeforge's offline kind nodes, in place of kindnetd (whose Go module the
# module proxy does not serve). One copy runs on every node (hack/kind/network.yaml) and:
#   - writes the node's CNI config: ptp veth pairs, addresses from the node's spec.podCIDR
#     (host-local IPAM), portmap for hostPort; the plugins are Debian's, in the node image;
#   - routes every other node's podCIDR via that node's InternalIP (kind's nodes share one
#     Docker network, so no encapsulation is needed);
#   - masquerades what pods send outside the cluster's pod subnet.
# It re-reads the nodes every RESYNC_S seconds, so nodes that join later are routed too.
# Environment: POD_SUBNET, HOST_IP; CONTROL_PLANE_ENDPOINT (host:port) when kind sets it.
set -euo pipefail

: "${POD_SUBNET:?}" "${HOST_IP:?}"
RESYNC_S=${RESYNC_S:-10}
CNI_CONF=/etc/cni/net.d/10-kindnet.conflist
ACCOUNT=/var/run/secrets/kubernetes.io/serviceaccount
API=https://${CONTROL_PLANE_ENDPOINT:-$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT}

list_nodes() {
  curl --silent --show-error --fail --max-time 10 --cacert "$ACCOUNT/ca.crt" \
    --header "Authorization: Bearer $(cat "$ACCOUNT/token")" "$API/api/v1/nodes"
}

# "<podCIDR> <InternalIP> <self|peer>" for each node that has a podCIDR.
node_routes() {
  jq -r --arg self "$HOST_IP" '.items[]
    | (.status.addresses // [] | map(select(.type == "InternalIP")) | first | .address) as $ip
    | select(.spec.podCIDR != null and $ip != null)
    | "\(.spec.podCIDR) \($ip) \(if $ip == $self then "self" else "peer" end)"'
}

write_cni_config() {
  local subnet=$1 next=$CNI_CONF.next
  jq -n --arg subnet "$subnet" '{cniVersion: "0.3.1", name: "kindnet", plugins: [
    {type: "ptp", ipMasq: false, ipam: {type: "host-local", dataDir: "/run/cni-ipam-state",
      routes: [{dst: "0.0.0.0/0"}], ranges: [[{subnet: $subnet}]]}},
    {type: "portmap", capabilities: {portMappings: true}}]}' >"$next"
  if cmp -s "$next" "$CNI_CONF"; then
    rm -f "$next"
  else
    mv "$next" "$CNI_CONF"
    echo "CNI config written for $subnet"
  fi
}

masquerade_egress() {
  local rule=(-s "$POD_SUBNET" ! -d "$POD_SUBNET" -m comment --comment "kubeforge pod egress" -j MASQUERADE)
  iptables -w -t nat -C POSTROUTING "${rule[@]}" 2>/dev/null || iptables -w -t nat -A POSTROUTING "${rule[@]}"
}

while true; do
  if nodes=$(list_nodes); then
    while read -r subnet ip role; do
      if [ "$role" = self ]; then
        write_cni_config "$subnet"
      else
        ip route replace "$subnet" via "$ip"
      fi
    done < <(node_routes <<<"$nodes")
    masquerade_egress
  fi
  sleep "$RESYNC_S"
done
