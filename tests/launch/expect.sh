# Sourced by the command-line tests. Needs $moxie.
# expect CODE PATTERN -- ARGS...: `moxie ARGS` exits with CODE and its
# stdout/stderr matches the extended regex PATTERN; counts passed/failures.
passed=0
failures=0
expect() {
  local code="$1" pattern="$2"
  shift 3
  local out rc
  out=$("$moxie" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: moxie $* -> exit $rc (want $code), output:"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok:   moxie $*"
    passed=$((passed + 1))
  fi
}
