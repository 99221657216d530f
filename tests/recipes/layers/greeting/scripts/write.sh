#!/bin/sh
# Options arrive as environment variables (and as /run/composer/options.json).
set -eu
mkdir -p /etc/greeting
printf 'hello %s\n' "$COMPOSER_OPT_NAME" > /etc/greeting/text
printf '%s\n' "$COMPOSER_OPT_COUNT" > /etc/greeting/count
cp /run/composer/options.json /etc/greeting/options.json
