# Sourced by scripts/test, scripts/demo and scripts/figures: installs what is missing and starts
# a private redis-server and Docker engine in a fresh work directory, and removes them on exit.
# After `start_services`: SUPERVISOR_TEST_REDIS_URL, REDIS_PORT, DOCKER_HOST, DOCKERD_LOG and
# SERVICES_DIR.

install_missing() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v promtool >/dev/null || missing+=(prometheus)  # promtool and the server
    if ((${#missing[@]})); then
        echo "services: installing ${missing[*]}" >&2
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
    install_compose_v2
}

# Compose v2 (`docker compose`), which users run: this Debian's docker-compose is v1, which
# cannot parse Dify's compose file. The next Debian release (trixie) packages v2 as a Docker CLI
# plugin: fetch that one package with a source list of our own, unpack it, and install the
# plugin where every docker CLI looks. Nothing of the machine's apt configuration changes.
install_compose_v2() {
    docker compose version >/dev/null 2>&1 && return 0
    local dir=/var/cache/iti-worker-supervisor/compose-v2 deb
    rm -rf "$dir" && mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/x"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
        "http://deb.debian.org/debian trixie main" >"$dir/sources.list"
    local apt=(apt-get -q -o "Dir::Etc::SourceList=$dir/sources.list"
        -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache::Archives=$dir/archives" -o APT::Sandbox::User=root)
    echo "services: installing Compose v2 (trixie's docker-compose, as a CLI plugin)" >&2
    "${apt[@]}" update >/dev/null
    (cd "$dir" && "${apt[@]}" download docker-compose >/dev/null)
    deb=$(ls "$dir"/docker-compose_*.deb)
    dpkg -x "$deb" "$dir/x"
    install -D -m 0755 "$dir/x/usr/libexec/docker/cli-plugins/docker-compose" \
        /usr/local/lib/docker/cli-plugins/docker-compose
    docker compose version >&2
}

stop_services() {
    set +e
    local work=$SERVICES_DIR pid ids
    [[ -n $work && -d $work ]] || return 0
    if [[ -S $work/docker.sock ]]; then
        ids=$(docker -H "unix://$work/docker.sock" ps -aq 2>/dev/null)
        [[ -n $ids ]] && docker -H "unix://$work/docker.sock" rm -f $ids >/dev/null 2>&1
    fi
    for pidfile in "$work/docker.pid" "$work/redis.pid"; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$work"
}

start_services() {
    SERVICES_DIR=$(mktemp -d /tmp/iti-supervisor.XXXXXX)
    export SERVICES_DIR
    trap stop_services EXIT
    local work=$SERVICES_DIR

    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export REDIS_PORT
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --dir "$work" --pidfile "$work/redis.pid" --logfile "$work/redis.log"
    export SUPERVISOR_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

    # A private Docker engine (no default bridge, no iptables). --debug logs every API call,
    # which the sidecar test reads to check what the supervisor asked of Docker.
    export DOCKERD_LOG="$work/dockerd.log"
    dockerd --debug --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
        --data-root "$work/docker-root" --exec-root "$work/docker-exec" \
        -H "unix://$work/docker.sock" --pidfile "$work/docker.pid" >"$work/dockerd.log" 2>&1 &
    export DOCKER_HOST="unix://$work/docker.sock"
    for _ in $(seq 150); do
        docker version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "services: dockerd did not start:" >&2
    tail -20 "$work/dockerd.log" >&2
    return 1
}
