#!/bin/sh
# composer-entrypoint: run the start-up hooks in /etc/composer/hooks.d in lexical
# order, then exec the command (supervisord by default) so it becomes PID 1.
# Set COMPOSER_SKIP_HOOKS=1 to start the command alone (debugging).
set -eu
if [ "${COMPOSER_SKIP_HOOKS:-0}" != 1 ] && [ -d /etc/composer/hooks.d ]; then
    for hook in /etc/composer/hooks.d/*; do
        [ -f "$hook" ] && [ -x "$hook" ] || continue
        if ! "$hook"; then
            echo "composer-entrypoint: start-up hook $hook failed" >&2
            exit 1
        fi
    done
fi
[ "$#" -gt 0 ] || set -- /bin/sh
# A secret given as an environment variable (podman run -e NAME=...) has been read by the
# hooks into root-only files for the users it is for; no program started from here —
# services, their children, SSH and tmux sessions — inherits it.
if [ -f /etc/composer/secret.names ]; then
    while IFS= read -r name; do
        case $name in '' | [0-9]* | *[!A-Za-z0-9_]*) continue ;; esac
        unset "$name"
    done < /etc/composer/secret.names
fi
# What the command makes itself (supervisord: the service logs, also after a rotation)
# is not for every user to read. supervisord applies its own `umask` setting only when
# it daemonizes, never as PID 1; its programs get theirs from the 45-logs hook.
umask 027
exec "$@"
