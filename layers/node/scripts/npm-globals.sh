#!/bin/sh
# npm install -g the `globals`; those named in `ignore_scripts` without their
# install scripts (they download from sites that are not reachable).
set -eu
set -f  # version ranges may hold '*': no globbing of the specs below
opts=$COMPOSER_OPTIONS
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
cache=$(mktemp -d)

# Specs whose package name ("@scope/name@1.2" -> "@scope/name") is (not) in ignore_scripts.
specs() {
    jq -r --argjson want "$1" '
        def name: if startswith("@") then "@" + (.[1:] | split("@")[0]) else split("@")[0] end;
        .ignore_scripts as $ign
        | .globals[] | select((name as $n | $ign | any(. == $n)) == $want)' "$opts"
}

# The schema allows no whitespace in a spec, so splitting the lists is safe.
plain=$(specs false)
scriptless=$(specs true)
if [ -n "$plain" ]; then
    echo "node: npm install -g" $plain
    npm install -g --no-fund --no-audit --cache "$cache" $plain
fi
if [ -n "$scriptless" ]; then
    echo "node: npm install -g --ignore-scripts" $scriptless
    npm install -g --no-fund --no-audit --cache "$cache" --ignore-scripts $scriptless
fi
rm -rf "$cache"
node --version
npm ls -g --depth=0
