#!/bin/sh
set -eu
mkdir -p /opt/marker
jq -r .value /run/composer/options.json > /opt/marker/value
printf '%s\n' "$COMPOSER_OPT_VALUE" > /opt/marker/value-env
