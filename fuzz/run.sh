#!/usr/bin/env bash
# Fuzzes parley's signalling decoder and SDP path (cargo fuzz, libFuzzer with AddressSanitizer) for a
# bounded time: installs cargo-fuzz when it is missing, builds the targets, then runs each on a copy
# of the committed corpus (so the tree stays clean) and prints the executions it reached. Exits
# non-zero when a target crashes or an assertion of it fails; the input is left in
# fuzz/artifacts/<target>/ (see fuzz/README.md to reproduce it).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   the targets to run, space-separated (default: signalling offer answer recording)
#   FUZZ_SANITIZER address (default) or none (faster, for long runs by hand)
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-60}"
read -r -a targets <<<"${FUZZ_TARGETS:-signalling offer answer recording}"
sanitizer="${FUZZ_SANITIZER:-address}"
# Under the target dir CI keeps warm; the fuzz build has its own flags, so its own folder.
target_dir="${CARGO_TARGET_DIR:-$PWD/../target}/fuzz"
[ "$sanitizer" = address ] || target_dir="$target_dir-$sanitizer"

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  started=$SECONDS
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" \
    --target-dir "$target_dir/cargo-fuzz-install"
  echo "installed in $((SECONDS - started)) s"
fi

cargo fmt --check

# cargo-fuzz builds with unstable flags (-Zsanitizer=address, and -Cpasses=sancov-module with its
# llvm-args), which rustc takes only on nightly. CI has the stable toolchain alone, so
# RUSTC_BOOTSTRAP=1 lets this stable rustc take them: the sanitizer runtimes ship with stable's
# rust-std on x86_64 Linux, only the flags are unstable. It is set for the fuzz build and runs only.
fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
build=(--sanitizer "$sanitizer" --target-dir "$target_dir")

echo "== building the fuzz targets (release, sanitizer: $sanitizer)"
started=$SECONDS
"${fuzz[@]}" build "${build[@]}"
echo "built in $((SECONDS - started)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  case "$target" in
    signalling) dict=signalling.dict ;;
    recording) dict="" ;;
    *) dict=sdp.dict ;;
  esac
  # RNNoise's FFT (easyfft, under nnnoiseless) caches its planners in per-thread boxes it never
  # frees, which LeakSanitizer reports now and then in the recording target: not a leak an input
  # causes (the caches are per FFT size, a handful in all), so leaks are not checked there.
  leaks=1
  [ "$target" = recording ] && leaks=0
  cp -r "corpus/$target" "$work/$target"
  log="$work/$target.log"
  echo "== fuzzing $target for $seconds s"
  status=0
  # -max_len: 64 KiB, a large signalling message and a large SDP (each much larger than a real one).
  # -timeout: one input taking 20 s is a hang. -rss_limit_mb: AddressSanitizer's quarantine and the
  # corpus take a few hundred MiB.
  ASAN_OPTIONS="detect_leaks=$leaks${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "${fuzz[@]}" run "${build[@]}" "$target" "$work/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=3072 \
    ${dict:+-dict="$dict"} -detect_leaks="$leaks" -print_final_stats=1 >"$log" 2>&1 || status=$?
  executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "!! $target failed (exit $status) after ${executions:-?} executions; the input is in fuzz/artifacts/$target/"
    failed+=("$target")
  else
    echo "$target: ${executions:-?} executions in $seconds s (${rate:-?}/s; ${done_line:-no final line})"
  fi
  # str0m panics that parley caught (the targets let them unwind): not failures, str0m bugs to report.
  grep '^str0m panicked at ' "$log" | sed 's/^/   caught: /' || true
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "!! fuzzing failed: ${failed[*]}"
  exit 1
fi
