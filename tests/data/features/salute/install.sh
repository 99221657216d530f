#!/bin/sh
# A Feature's install.sh as the spec runs it: as root, options in MESSAGE and SHOUT.
set -eu
mkdir -p /usr/local/share/greeting
text="$MESSAGE"
if [ "$SHOUT" = "true" ]; then
    text=$(printf '%s' "$text" | tr '[:lower:]' '[:upper:]')
fi
printf '%s\n' "$text" > /usr/local/share/greeting/greeting.txt
