# lib.sh - what the end-to-end shell tests share; sourced, not run:
#
#   . "$(dirname "$0")/lib.sh"
#
# Every check is counted and printed ("ok   WHAT" or "FAIL WHAT" with what was expected and
# found); checks_done prints the count last and gives the script's exit status. run needs
# $SACCADE and $TMP, set by the sourcing script.

fails=0
checks=0

# The six training images `cli_helper data DIR` writes, and the captions of a model trained on
# them until it overfits (IMAGE<TAB>caption, in this order)
HELPER_IMAGES=(red.png green.png blue.png yellow.png cross.png checker.png)
HELPER_CAPTIONS=$'red.png\ta red square on black
green.png\ta green circle on white
blue.png\tblue stripes on white
yellow.png\tyellow on the left
cross.png\ta white cross on black
checker.png\ta purple checker board'

# pass DESCRIPTION
pass() { checks=$((checks + 1)); echo "ok   $1"; }
# fail DESCRIPTION [DETAIL-LINE...]
fail() {
    checks=$((checks + 1)) fails=$((fails + 1))
    echo "FAIL $1"
    shift
    for line in "$@"; do echo "     $line"; done
}
# expect_eq DESCRIPTION FOUND EXPECTED
expect_eq() {
    if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "expected: $(printf %q "$3")" "found:    $(printf %q "$2")"; fi
}
# expect_grep DESCRIPTION FILE REGEX: FILE has a line matching the extended regex
expect_grep() {
    if grep -Eq -- "$3" "$2"; then pass "$1"; else fail "$1" "no line of $(basename "$2") matches /$3/:" "$(head -c 600 "$2")"; fi
}
# run NAME ARGS...: run saccade with stdout in $TMP/NAME.out, stderr in $TMP/NAME.err, exit status in $rc
run() {
    local name=$1
    shift
    "$SACCADE" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    rc=$?
}
# checks_done: print how many checks ran and failed; the status is 0 when none failed
checks_done() {
    echo "$checks checks, $fails failed"
    [ $fails -eq 0 ]
}
