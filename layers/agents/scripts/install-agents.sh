#!/bin/sh
# Copy the templates into place once at build time (the 60-agents hook syncs again at
# every start).
set -eu
composer-agents sync
