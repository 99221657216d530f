#!/bin/sh
# Write the settings composer-agents reads, then sync once at build time.
set -eu
opts=/run/composer/options.json
mkdir -p /etc/composer
{
    printf 'target=%s\n' "$(jq -r '.target' "$opts")"
    printf 'user=%s\n' "$(jq -r '.user' "$opts")"
    printf 'extra_dir=%s\n' "$(jq -r '.extra_dir' "$opts")"
} > /etc/composer/agents.conf
/usr/local/bin/composer-agents sync
