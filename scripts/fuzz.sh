#!/usr/bin/env bash
# Coverage-guided fuzzing of Portcullis's parsers with AFL++ through cargo-afl, on the
# stable toolchain (fuzz/README.md: targets, input formats, invariants, results).
#
#   scripts/fuzz.sh [--seconds N] [target ...]    (default: 600 s each, every target)
#
# Installs cargo-afl when it is missing (`cargo install --locked cargo-afl`, which also
# builds AFL++ with gcc/make; `cargo afl config --build` when an older install has no
# AFL++ yet), builds the targets with AFL++'s instrumentation, fuzzes each target in
# turn for N seconds starting from its committed corpus (fuzz/corpus/<target>), prints
# per target the executions done, executions a second, corpus size, crashes and hangs,
# and exits 1 if any target found a crash or a hang. What a run found stays in
# fuzz/out/<target>/default/{crashes,hangs} (not committed). With CI=true a tool that
# cannot be installed fails the run; nothing is ever skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(htpasswd config oci range manifest)
seconds=600
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  case " ${all[*]} " in *" $t "*) ;; *) echo "unknown target $t (targets: ${all[*]})" >&2; exit 2 ;; esac
done
case "$seconds" in ''|*[!0-9]*) echo "--seconds takes a whole number, not $seconds" >&2; exit 2 ;; esac

bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in *":$bin:"*) ;; *) export PATH="$PATH:$bin" ;; esac
if ! cargo afl --version >/dev/null 2>&1; then
  echo "installing cargo-afl (builds AFL++ too; needs gcc and make)"
  cargo install --locked cargo-afl
fi
# cargo-afl refuses every command but `config` until AFL++ and its runtime are built
# for this rustc (a rustc update needs it again).
if cargo afl fuzz -h 2>&1 | grep -q "was not built"; then
  echo "building AFL++ for this rustc (cargo afl config --build)"
  cargo afl config --build
fi

echo "building the fuzz targets (fuzz/, instrumented)"
(cd fuzz && cargo afl build --locked --bins)

# AFL++ in a shared sandbox: no UI, no CPU frequency or core_pattern checks (we
# cannot change either), no pinning to a core other processes use, no 'fuzzing
# interrupted' prompt for a resumed run; the run ends by itself after N seconds.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_AFFINITY=1 AFL_SUPPRESS_NO_DEVICES=1 AFL_NO_WARN_INSTABILITY=1

failed=0
summary=()
for t in "${targets[@]}"; do
  out="fuzz/out/$t"
  rm -rf "$out"
  mkdir -p "$out"
  echo "fuzzing $t for ${seconds}s"
  # -t 2000: an input is a hang after 2 s; the slowest legitimate input (six bcrypt
  # hashes at cost 6, htpasswd's harness bound) takes ~30 ms on an idle core.
  # -x: the target's dictionary of keywords (fuzz/dict), which havoc splices in.
  if ! cargo afl fuzz -i "fuzz/corpus/$t" -o "$out" -x "fuzz/dict/$t.dict" -V "$seconds" \
    -t 2000 "fuzz/target/debug/$t" >"$out/afl.log" 2>&1; then
    echo "FAILED: afl-fuzz on $t did not run; the end of its log:" >&2
    tail -n 30 "$out/afl.log" >&2
    failed=1
    summary+=("$t: afl-fuzz failed to run")
    continue
  fi
  stats="$out/default/fuzzer_stats"
  stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  hangs=$(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  line="$t: $(stat run_time)s, $(stat execs_done) execs, $(stat execs_per_sec) execs/s, corpus $(stat corpus_count), crashes $crashes, hangs $hangs"
  echo "$line"
  summary+=("$line")
  if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
    echo "FAILED: $t found $crashes crash(es) and $hangs hang(s):" >&2
    find "$out/default/crashes" "$out/default/hangs" -type f -name 'id:*' >&2
    echo "reproduce with: fuzz/target/debug/$t < FILE" >&2
    failed=1
  fi
done

echo "fuzzing summary:"
printf '  %s\n' "${summary[@]}"
exit "$failed"
