# Shared helpers for integration tests (sourced). Each check prints one line; `finish` prints
# the machine-readable summary and sets the exit status.
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND (an executable, killed after CHECK_TIMEOUT seconds,
# default 120), records pass or fail, and shows its output on failure.
check() {
  local name=$1; shift
  local output
  if output=$(timeout "${CHECK_TIMEOUT:-120}" "$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   - $name"
  else
    failed=$((failed + 1))
    echo "FAIL - $name"
    printf '%s\n' "$output" | tail -n 20 | sed 's/^/       | /'
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
