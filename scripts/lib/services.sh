# Sourced by scripts/test, scripts/demo and scripts/figures: installs what is missing and starts
# a private redis-server and Docker engine in a fresh work directory, and removes them on exit.
# After `start_services`: SUPERVISOR_TEST_REDIS_URL, REDIS_PORT, DOCKER_HOST, DOCKERD_LOG and
# SERVICES_DIR. scripts/test also runs `install_current_engine` and `start_current_engine`: a
# second, current engine (DOCKER_HOST_CURRENT, DOCKER_CURRENT_VERSION, DOCKERD_CURRENT_LOG).

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
    local dir=/var/cache/iti-worker-supervisor/compose-v2
    echo "services: installing Compose v2 (trixie's docker-compose, as a CLI plugin)" >&2
    unpack_trixie_package docker-compose "$dir"
    install -D -m 0755 "$dir/x/usr/libexec/docker/cli-plugins/docker-compose" \
        /usr/local/lib/docker/cli-plugins/docker-compose
    docker compose version >&2
}

# One package of trixie, unpacked into DIR/x (never installed: dpkg does not know of it), with
# a source list, package lists and archive of DIR's own.
unpack_trixie_package() {
    local package=$1 dir=$2
    rm -rf "$dir" && mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/x"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
        "http://deb.debian.org/debian trixie main" >"$dir/sources.list"
    local apt=(apt-get -q -o "Dir::Etc::SourceList=$dir/sources.list"
        -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache::Archives=$dir/archives" -o APT::Sandbox::User=root)
    "${apt[@]}" update >/dev/null
    (cd "$dir" && "${apt[@]}" download "$package" >/dev/null)
    dpkg -x "$(ls "$dir/${package}"_*.deb)" "$dir/x"
}

# A current engine next to Debian 12's (20.10, the last to honour API versions below 1.24):
# trixie's docker.io (26.1), as operators run Docker 24 to 28. Only its dockerd is used, kept
# in the cache and not on PATH (Debian 12's dockerd stays the machine's). It needs nothing else
# of trixie: it links against Debian 12's libraries (glibc 2.34 or later: 2.36 here), and runs
# on Debian 12's containerd 1.6, runc 1.1 and docker-init, which its docker.io brings (trixie's
# runc would need glibc 2.38).
CURRENT_ENGINE_DIR=/var/cache/iti-worker-supervisor/docker-current
CURRENT_DOCKERD=$CURRENT_ENGINE_DIR/x/usr/sbin/dockerd

install_current_engine() {
    "$CURRENT_DOCKERD" --version >/dev/null 2>&1 && return 0
    echo "services: installing a current Docker engine (trixie's docker.io, its dockerd only)" >&2
    unpack_trixie_package docker.io "$CURRENT_ENGINE_DIR"
    "$CURRENT_DOCKERD" --version >&2
}

stop_services() {
    set +e
    local work=$SERVICES_DIR pid ids sock
    [[ -n $work && -d $work ]] || return 0
    for sock in "$work/docker.sock" "$work/docker-current.sock"; do
        [[ -S $sock ]] || continue
        ids=$(docker -H "unix://$sock" ps -aq 2>/dev/null)
        [[ -n $ids ]] && docker -H "unix://$sock" rm -f $ids >/dev/null 2>&1
    done
    for pidfile in "$work/docker.pid" "$work/docker-current.pid" "$work/redis.pid"; do
        stop_pidfile "$pidfile"
    done
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$work"
}

stop_pidfile() {
    local pid
    [[ -f $1 ]] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$1"
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
    # which the sidecar test reads to check what the supervisor asked of Docker. overlay2 where
    # the kernel and this file system take it (vfs copies an image's whole root for every
    # container: 5 to 10 s each for the stand-in image), else vfs.
    export DOCKERD_LOG="$work/dockerd.log"
    export DOCKER_HOST="unix://$work/docker.sock"
    local driver
    for driver in $(storage_drivers); do
        dockerd --debug --iptables=false --ip6tables=false --bridge=none \
            --storage-driver="$driver" --data-root "$work/docker-root-$driver" \
            --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
            --pidfile "$work/docker.pid" >"$work/dockerd.log" 2>&1 &
        wait_engine "$DOCKER_HOST" "$DOCKERD_LOG" $! && return 0
        kill -9 $! 2>/dev/null
        stop_pidfile "$work/docker.pid"
        echo "services: dockerd did not start with $driver; trying the next driver" >&2
    done
    return 1
}

storage_drivers() {
    if grep -qw overlay /proc/filesystems; then echo overlay2 vfs; else echo vfs; fi
}

# The current engine (install_current_engine), after start_services: its own socket, data root,
# exec root (so its own containerd, which it starts there on a socket of its own) and pidfile;
# like the first, no bridge, no iptables, and the storage driver the first one could use
# (overlay2, Docker's default and what operators run, where the kernel and file system take it).
start_current_engine() {
    local work=$SERVICES_DIR driver
    driver=$(docker info -f '{{.Driver}}')  # what the first engine could use here
    export DOCKERD_CURRENT_LOG="$work/dockerd-current.log"
    "$CURRENT_DOCKERD" --debug --iptables=false --ip6tables=false --bridge=none \
        --storage-driver="$driver" --data-root "$work/docker-current-root" \
        --exec-root "$work/docker-current-exec" -H "unix://$work/docker-current.sock" \
        --pidfile "$work/docker-current.pid" >"$DOCKERD_CURRENT_LOG" 2>&1 &
    export DOCKER_HOST_CURRENT="unix://$work/docker-current.sock"
    wait_engine "$DOCKER_HOST_CURRENT" "$DOCKERD_CURRENT_LOG" || return 1
    DOCKER_CURRENT_VERSION=$(docker -H "$DOCKER_HOST_CURRENT" version -f '{{.Server.Version}}')
    export DOCKER_CURRENT_VERSION
}

wait_engine() {
    local host=$1 log=$2 pid=${3:-}
    for _ in $(seq 150); do
        docker -H "$host" version >/dev/null 2>&1 && return 0
        [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && break  # it exited (a driver refused)
        sleep 0.2
    done
    echo "services: the dockerd of $host did not start:" >&2
    tail -20 "$log" >&2
    return 1
}
