#!/usr/bin/env bash
# Needs the salute Feature (dependsOn): fails without its file.
set -euo pipefail
greeting=$(cat /usr/local/share/greeting/greeting.txt)
echo "${greeting}, ${FLAVOUR}${EXTRATOPPING:+ with ${EXTRATOPPING}}" > /etc/flavour
