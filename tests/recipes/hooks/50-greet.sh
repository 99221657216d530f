#!/bin/sh
# Start-up hook: proves hooks run before the command.
set -eu
cat /etc/greeting/text > /run/greeted
