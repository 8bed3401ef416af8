# Sourced by the bench scripts. resolve_bin NAME: makes BIN (given with --bin, else the release
# build, built first when missing) an absolute path to an executable, or dies. Needs ROOT and
# die() from the sourcing script; NAME prefixes its one message.
resolve_bin() {
  if [[ -z $BIN ]]; then
    BIN=$ROOT/target/release/ferry
    if [[ ! -x $BIN ]]; then
      echo "$1: $BIN missing; running cargo build --release" >&2
      (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
    fi
  fi
  [[ -x $BIN && -f $BIN ]] || die "not an executable file: $BIN"
  BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
}
