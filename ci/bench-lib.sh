# Helpers the ci/bench-*.sh scripts source: timing, medians, and a private s3s-fs server.

# Milliseconds since a `date +%s%N` stamp.
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }'; }

# start_s3s DIR BUCKET: an s3s-fs server on 127.0.0.1 serving DIR with BUCKET in it, and
# the AWS variables pointing at it (nothing from the host's AWS config). Sets s3s_pid; the
# caller's EXIT trap kills it.
start_s3s() {
  local dir=$1 bucket=$2 s3s port
  s3s=${S3S_FS:-${BOOTFORGE_TOOLS:-$HOME/.cache/bootforge/tools}/bin/s3s-fs}
  [ -x "$s3s" ] || { echo "no s3s-fs at $s3s: run ci/test.sh once, or set S3S_FS" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/$bucket"
  "$s3s" --host 127.0.0.1 --port "$port" --access-key benchkey --secret-key benchsecret123 \
    "$dir" >"$dir.log" 2>&1 &
  s3s_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123 AWS_REGION=us-east-1
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_CONFIG_FILE=/dev/null
  export AWS_SHARED_CREDENTIALS_FILE=/dev/null
}

# bench_start: a release build as $bf, a scratch directory $work removed on exit, and s3s-fs
# serving bucket `bench` from $work/s3.
bench_start() {
  cargo build --release --locked -q
  bf="$PWD/target/release/bootforge"
  work=$(mktemp -d)
  s3s_pid=
  trap bench_cleanup EXIT
  start_s3s "$work/s3" bench
}
bench_cleanup() {
  [ -z "$s3s_pid" ] || kill "$s3s_pid" 2>/dev/null || true
  rm -rf "$work"
}
