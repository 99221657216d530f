#!/bin/sh
set -eu
mkdir -p /opt/fan-note
printf '%s\n' "$COMPOSER_OPT_TEXT" > /opt/fan-note/text
