#!/bin/sh
# Dify's redis service, started as Dify starts it but with its users in an ACL file, so that
# the supervisor's least-privilege users (deploy/redis/users-redis6.acl) survive a restart of
# Redis: Redis 6 reads users from no other file. Dify's own password keeps working: it becomes
# the default user's, as `--requirepass` made it. The file holds SHA-256 hashes, never a
# password, and is written anew at every start from the environment (the override sets it).
set -eu
: "${REDIS_PASSWORD:?is not set: the override passes Dify's REDIS_PASSWORD}"
acl=/tmp/iti-worker-supervisor-users.acl
hash() { printf %s "$1" | sha256sum | cut -d ' ' -f 1; }
umask 077
{
    echo "user default on #$(hash "$REDIS_PASSWORD") ~* &* +@all"
    if [ -n "${SUPERVISOR_REDIS_PASSWORD:-}" ]; then
        sed "s/>PASSWORD/#$(hash "$SUPERVISOR_REDIS_PASSWORD")/" \
            /etc/iti-worker-supervisor/users-redis6.acl
    fi
} >"$acl"
if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    # The redis image's entrypoint: it drops to the redis user, who must read the file.
    chown redis "$acl"
    exec docker-entrypoint.sh redis-server --aclfile "$acl" "$@"
fi
exec redis-server --aclfile "$acl" "$@"
