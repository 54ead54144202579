#!/usr/bin/env bash
# The naive way to replace a running container with a new version, written
# from its usual description, for the outage benchmark (benches/outage.rs):
#
#   stop the old container; run the new one under a temporary name on the
#   same network with the same published port; disconnect it from the
#   network; rename the old one away; rename the new one to the app's name;
#   reconnect it; remove the old one.
#
# The renames need the disconnect: Docker refuses to rename a running
# container attached to an overlay network (moby#42351). The only addition to
# the description is a retry (up to 10 tries, 200 ms apart) around the start
# and the reconnect: on an attachable overlay, Docker can fail them with
# "failed to get network during CreateEndpoint" right after the node's last
# container left the network (moby PR#41011). `docker run` is split into
# create + start so that a retried start does not hit a name conflict.
#
# Usage: benches/naive.sh APP IMAGE HOST_PORT NETWORK [CONTAINER_PORT]
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 APP IMAGE HOST_PORT NETWORK [CONTAINER_PORT]" >&2
    exit 2
fi
app="$1" image="$2" host_port="$3" network="$4" container_port="${5:-8080}"
new="$app--naive-new"
old="$app--naive-old"

retry() {
    local tries=0
    until "$@" >/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 10 ]; then
            echo "naive: giving up on: $*" >&2
            return 1
        fi
        echo "naive: retrying: $*" >&2
        sleep 0.2
    done
}

docker stop "$app" >/dev/null
docker create --name "$new" --network "$network" \
    --publish "$host_port:$container_port" "$image" >/dev/null
retry docker start "$new"
docker network disconnect "$network" "$new"
docker rename "$app" "$old"
docker rename "$new" "$app"
retry docker network connect "$network" "$app"
docker rm "$old" >/dev/null
