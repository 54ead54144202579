#!/usr/bin/env bash
# A real deploy, end to end, on this host's Docker engine: builds the demo
# images and swap, deploys swap-demo v1, replaces it with v2 (built from its
# build context), shows a crashing candidate being rolled back while v2 keeps
# serving, then prints the app's history and journal.
#
# Usage: demo/deploy.sh
#   HOST_PORT       host port to publish the app on (default 8080)
#   APP             app / container name (default swap-demo)
#   SWAP_STATE_DIR  swap's state dir (default: a fresh temporary directory)
# The app is left running afterwards; remove it with `docker rm -f swap-demo`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

app="${APP:-swap-demo}"
port="${HOST_PORT:-8080}"
state_dir="${SWAP_STATE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/swap-demo-state.XXXXXX")}"
swap="$repo/target/release/swap"

say() { printf '\n==> %s\n' "$*" >&2; }

# Runs swap with the demo's state dir, echoing the command first.
run_swap() {
    printf '$ swap %s\n' "$*" >&2
    "$swap" --state-dir "$state_dir" "$@"
}

# GET / on the published port; prints the body. curl if present, else bash's
# /dev/tcp (HTTP/1.0, so the server closes the connection after answering).
http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl --silent --show-error --fail --max-time 2 "http://127.0.0.1:$port/"
    else
        local response
        exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
        printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        response="$(timeout 2 cat <&3)" || { exec 3<&-; return 1; }
        exec 3<&-
        case "$response" in "HTTP/1."?" 200"*) ;; *) return 1 ;; esac
        printf '%s\n' "${response#*$'\r\n\r\n'}"
    fi
}

# Shows what the app answers, retrying briefly while the port comes up.
show_answer() {
    local body
    for _ in $(seq 50); do
        if body="$(http_get 2>/dev/null)"; then
            printf 'http://127.0.0.1:%s/ answers: %s\n' "$port" "$body" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "http://127.0.0.1:$port/ does not answer" >&2
    return 1
}

if docker container inspect "$app" >/dev/null 2>&1; then
    echo "A container named $app already exists (an earlier demo run?)." >&2
    echo "Remove it with \`docker rm -f $app\`, or pick another name: APP=my-demo $0" >&2
    exit 2
fi

say "building the demo images (demo/build-images.sh)"
demo/build-images.sh

say "building swap (cargo build --release)"
cargo build --release --quiet

echo "swap state dir: $state_dir" >&2

say "first deploy: $app v1, published on port $port"
run_swap deploy "$app" --image swap-demo:v1 --publish "$port:8080"
show_answer

say "re-deploy: v2, built from demo/image/v2 (the container definition is cloned from v1's)"
run_swap deploy "$app" --build demo/image/v2 --tag swap-demo:v2
show_answer

say "a bad deploy: swap-demo:crash exits at once, so swap rolls back to v2"
status=0
run_swap deploy "$app" --image swap-demo:crash --health-timeout 10 || status=$?
if [ "$status" -eq 1 ]; then
    echo "swap exited 1: the deploy failed and was rolled back" >&2
else
    echo "unexpected exit code $status from the failing deploy (expected 1)" >&2
fi
show_answer

say "history"
run_swap history "$app"

say "journal"
run_swap journal show "$app"

say "done: $app keeps running; remove it with \`docker rm -f $app\`"
if [ "$status" -ne 1 ]; then exit 1; fi
