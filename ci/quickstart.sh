#!/usr/bin/env bash
# The quick start: installs what bootforge needs and is missing (ci/setup.sh run), then runs
# bootforge with the given arguments, `build ipxe` by default: the toolchain image once
# (debootstrap), then iPXE v2.0.0 from its pinned commit.
#   bash ci/quickstart.sh
#   bash ci/quickstart.sh build ipxe --mirror https://github.com/ipxe/ipxe.git=/srv/ipxe.git
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh run
[ $# -gt 0 ] || set -- build ipxe
exec cargo run --release --locked --quiet -- "$@"
