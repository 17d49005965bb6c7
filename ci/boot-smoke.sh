#!/usr/bin/env bash
# Boot smoke test for a bootforge medium: boots IMAGE under QEMU with SeaBIOS and waits until
# the serial log shows that *our* iPXE started and runs the embedded chainload script
# (embed/chain.ipxe.j2 prints "bootforge: iPXE <version> on <platform>/<arch>").
#
#   bash ci/boot-smoke.sh IMAGE [SECONDS]      # IMAGE: bootforge.iso (CD) or a raw disk image
#
# Exit status 0 when the text was seen within SECONDS (default 120), 1 otherwise (the serial
# log is printed), 2 for a usage error. Environment (all optional):
#   BOOT_SMOKE_EXPECT      text that must appear (default "bootforge: iPXE")
#   BOOT_SMOKE_CHAIN_URL   also require "bootforge: chaining <URL>" (the script got a DHCP
#                          lease from QEMU's user network and is about to chain to URL)
#   BOOT_SMOKE_LOG         keep the serial log at this path (e.g. for a CI artifact)
#   BOOT_SMOKE_ACCEL       QEMU accelerator (default tcg; "kvm" is faster where it works)
#   QEMU                   the QEMU binary (default qemu-system-x86_64)
#
# Why not just look for "iPXE": ISOLINUX writes to the serial port itself (isolinux.cfg has
# SERIAL), but iPXE and SeaBIOS write to the screen only. SeaBIOS's serial console ("sercon",
# enabled through the fw_cfg file etc/sercon-port) copies screen output to COM1 so iPXE's
# text reaches the log. QEMU's own NIC option ROM is also iPXE and prints "iPXE" too, so it is
# disabled (romfile=) and the check is on the line only our embedded script prints.
set -euo pipefail

usage() {
  echo "usage: $0 IMAGE [SECONDS]   (IMAGE: an .iso, or a raw disk image such as bootforge-usb.img)" >&2
  exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
image=$1
limit=${2:-${BOOT_SMOKE_TIMEOUT:-120}}
[[ $limit =~ ^[1-9][0-9]*$ ]] || { echo "boot-smoke: SECONDS must be a positive integer, got '$limit'" >&2; exit 2; }
[ -f "$image" ] || { echo "boot-smoke: no such image: $image" >&2; exit 2; }
expect=${BOOT_SMOKE_EXPECT:-bootforge: iPXE}
chain_url=${BOOT_SMOKE_CHAIN_URL:-}
accel=${BOOT_SMOKE_ACCEL:-tcg}
qemu=${QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || {
  echo "boot-smoke: $qemu not found (apt-get install qemu-system-x86)" >&2
  exit 1
}

work=$(mktemp -d)
log="$work/serial.log"
qemu_pid=
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [ -n "${BOOT_SMOKE_LOG:-}" ] && [ -f "$log" ]; then
    cp "$log" "$BOOT_SMOKE_LOG" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# SeaBIOS reads etc/sercon-port as a little-endian integer: 0x3f8, COM1.
printf '\370\003' >"$work/sercon-port"

case $image in
  *.iso | *.ISO) media=(-cdrom "$image" -boot order=d) ;;
  # snapshot=on: the image file is never written to.
  *) media=(-drive "file=$image,format=raw,if=ide,snapshot=on" -boot order=c) ;;
esac

# The serial log with terminal escapes removed and lines joined, so that a line the
# 80-column console wrapped still matches.
flat() {
  sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' "$log" 2>/dev/null | tr -d '\r\n'
}
seen() {
  local text
  text=$(flat)
  [[ $text == *"$expect"* ]] || return 1
  [ -z "$chain_url" ] || [[ $text == *"bootforge: chaining $chain_url"* ]]
}

echo "boot-smoke: booting $image under SeaBIOS (accel $accel, limit ${limit}s), waiting for '$expect'${chain_url:+ and a chain to $chain_url}" >&2
: >"$log"
"$qemu" -m 256 -display none -no-reboot -accel "$accel" \
  "${media[@]}" \
  -serial "file:$log" \
  -fw_cfg "name=etc/sercon-port,file=$work/sercon-port" \
  -netdev user,id=n0 -device e1000,netdev=n0,romfile= \
  2>"$work/qemu.err" &
qemu_pid=$!

start=$SECONDS
result=timeout
while (( SECONDS - start < limit )); do
  if seen; then
    result=pass
    break
  fi
  if ! kill -0 "$qemu_pid" 2>/dev/null; then
    # QEMU exited (a reboot with -no-reboot, or a startup error): one last look at the log.
    if seen; then result=pass; else result=exited; fi
    break
  fi
  sleep 1
done
elapsed=$((SECONDS - start))

show_log() {
  echo "--- serial log (escapes removed) ---" >&2
  sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/\r//g' "$log" | tail -n 60 >&2
  # QEMU's warning about a fw_cfg name without "opt/" is expected (etc/sercon-port is what
  # SeaBIOS reads); anything else on its stderr is worth seeing.
  if grep -v 'should be prefixed with "opt/"' "$work/qemu.err" | grep -q .; then
    echo "--- qemu stderr ---" >&2
    grep -v 'should be prefixed with "opt/"' "$work/qemu.err" >&2 || true
  fi
}

case $result in
  pass)
    echo "boot-smoke: PASS after ${elapsed}s: $image started the bootforge chainload script" >&2
    sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/\r//g' "$log" \
      | grep -a -E '^(ISOLINUX|iPXE [0-9]|bootforge:)' | head -n 6 >&2 || true
    ;;
  exited)
    echo "boot-smoke: FAIL: QEMU exited after ${elapsed}s before '$expect'${chain_url:+ and a chain to $chain_url} appeared" >&2
    show_log
    exit 1
    ;;
  *)
    echo "boot-smoke: FAIL: '$expect'${chain_url:+ and a chain to $chain_url} not seen within ${limit}s" >&2
    show_log
    exit 1
    ;;
esac
