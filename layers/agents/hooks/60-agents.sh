#!/bin/sh
# The seed's "agent templates" start-up phase: the agents folder is usually a volume,
# empty on first start, and a team may mount more templates (the module's extra_dir);
# copy in the ones not there yet and record the count (/etc/composer/agents.count).
set -eu
# Root's own folders only: a program of this name in a user-writable folder on the
# image's PATH must not run as root.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
if command -v composer-agents > /dev/null 2>&1; then
    composer-agents sync >&2
fi
