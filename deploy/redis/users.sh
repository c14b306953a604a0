#!/bin/sh
# users.sh RULES SECRETS: prints RULES (deploy/redis/users.conf) with each service user's
# password added as `#SHA256`, read from SECRETS/redis_<user>_password (the password is the
# file's text without its trailing newline, as it goes into the service's Redis URL).
# Only the hash reaches the generated file and redis-server's memory: not its command line.
# POSIX sh: runs in the redis image (busybox) and in the tests (dash).
set -eu

rules=$1
secrets=$2

while IFS= read -r line || [ -n "$line" ]; do
    case $line in
    "user default "*) ;;
    "user "*)
        name=${line#user }
        name=${name%% *}
        file="$secrets/redis_${name}_password"
        if [ ! -r "$file" ]; then
            echo "users.sh: no password for Redis user $name: $file is missing" >&2
            exit 1
        fi
        password=$(cat "$file")
        if [ "${#password}" -lt 16 ]; then
            echo "users.sh: the password in $file is shorter than 16 characters" >&2
            exit 1
        fi
        hash=$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)
        line="$line #$hash"
        ;;
    esac
    printf '%s\n' "$line"
done <"$rules"
