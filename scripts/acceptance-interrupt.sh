#!/usr/bin/env bash
# Acceptance 2 of issue 6, by hand: SIGINT 8 s into a 2,000-group cloud-paced apply against
# `roster sandbox serve`; the report's done changes must equal what the portal holds, and a
# second apply converges. Build first: `cargo build --release`; then run from anywhere:
#   scripts/acceptance-interrupt.sh
# Prints the counts and three checks; the CI test tests/it/safety.rs does the same smaller.
set -um  # job control: background jobs get SIGINT as a terminal would send it
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${ROSTER:-$ROOT/target/release/roster}
WORK=$(mktemp -d); cd "$WORK"
$R sandbox generate --out gen --groups 2000 --members 40 --churn 0.05 --seed 1 >/dev/null
$R sandbox serve --state gen/portal.yaml --listen 127.0.0.1:8031 > serve.out 2>&1 &
SERVE=$!
until grep -q 'webhook URL' serve.out; do sleep 0.1; done
URL=$(grep 'webhook URL' serve.out | cut -d' ' -f3)
$R plan gen/groups.yaml --portal "$URL" --format json > before.json
sleep 25  # let the portal's bucket drain after the plan
$R apply gen/groups.yaml --portal "$URL" --auto-approve > apply.out 2> apply.err &
PID=$!
sleep 8
kill -INT $PID
wait $PID; echo "apply exit: $?"
$R plan gen/groups.yaml --portal "$URL" --format json > after.json
python3 - <<'PY'
import json, re
def planned(f):
    d = json.load(open(f)); out = set()
    sym = {"add": "+", "set_role": "~", "remove": "-"}
    for g in d["groups"]:
        for e in g["entries"]:
            if e["action"] in sym: out.add((g["id"], sym[e["action"]], e["user"]))
    return out
before, after = planned("before.json"), planned("after.json")
status = {}
for line in open("apply.out"):
    m = re.match(r'^(done|not done|failed|unknown|not started)\s+group (\d+)[^:]*: (.) user (\d+)', line)
    if m: status[(int(m[2]), m[3], int(m[4]))] = m[1]
done = {c for c, s in status.items() if s == "done"}
from collections import Counter
print("planned", len(before), "reported", len(status), Counter(status.values()))
print("report covers the plan:", set(status) == before)
print("before - done == after:", before - done == after, "(remaining", len(after), ")")
PY
$R apply gen/groups.yaml --portal "$URL" --auto-approve > again.out 2>&1; echo "re-run exit: $?"; tail -1 again.out
$R plan gen/groups.yaml --portal "$URL" --detailed-exitcode > /dev/null 2>&1; echo "final plan --detailed-exitcode: $?"
kill -INT $SERVE; wait $SERVE; tail -1 serve.out | cut -c1-200
