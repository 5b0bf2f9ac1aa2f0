#!/usr/bin/env bash
# Issue 7's acceptance, by hand: people by e-mail and groups by name, unresolvable references,
# invitations, owner transfer, OAuth, a non-admin webhook. Builds roster, works in a temp dir,
# prints each check as "ok" or "FAILED", and exits 1 if any failed.
#   scripts/acceptance-people.sh
set -u
cd "$(dirname "$0")/.."
cargo build -q || exit 1
roster="$PWD/target/debug/roster"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
failed=0
check() { # check NAME COMMAND...: run the command, print ok or FAILED
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then echo "ok      $name"; else echo "FAILED  $name"; failed=1; fi
}
fresh() { cp examples/sandbox.yaml "$work/portal.yaml"; }
# Serve $work/portal.yaml; sets $url (the admin webhook) and $base.
serve() {
  "$roster" sandbox serve --state "$work/portal.yaml" --listen 127.0.0.1:0 >"$work/serve.out" &
  for _ in $(seq 100); do grep -q '^webhook URL:' "$work/serve.out" && break; sleep 0.1; done
  url=$(sed -n 's/^webhook URL: //p' "$work/serve.out")
  base=${url%%/rest/*}
}
stop() { kill -INT $(jobs -p) 2>/dev/null; wait; }
counter() { curl -s "$base/_sandbox/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "1. The quick start shows people by e-mail and groups by name; the dismissed user, the"
echo "   pending invitation and the pending request are shown and are not changes."
fresh
"$roster" plan examples/groups.yaml --portal "sandbox:$work/portal.yaml" | tee "$work/plan.txt"
check "e-mails and names shown" grep -q 'di@example.com (#22)' "$work/plan.txt"
check "group by name shown" grep -q '"Marketing" (#15)' "$work/plan.txt"
check "inactive user shown" grep -q 'ivy@example.com (#50)  inactive: not added' "$work/plan.txt"
check "pending invitation shown" grep -q 'jo@example.com (#60)   invited, pending acceptance' "$work/plan.txt"
check "3 pending, not changes" grep -q '3 pending' "$work/plan.txt"

echo; echo "2. Unknown e-mail, ambiguous e-mail, unknown user ID, unknown group name: each an error"
echo "   at file:line:column; the other groups are still planned; exit 1."
fresh
sed -i 's/^  - { id: 60, email: jo@example.com/  - { id: 61, email: twin@example.com, name: T, last_name: One }\n  - { id: 62, email: TWIN@example.com, name: T, last_name: Two }\n&/' "$work/portal.yaml"
cat >"$work/bad.yaml" <<'EOF'
version: 1
groups:
  - id: 15
    members: [nobody@example.com, 9999]
  - id: 27
    members: [twin@example.com]
  - name: No Such Group
    members: [cy@example.com]
  - name: Sales
    prune: false
    members: [ed@example.com]
EOF
"$roster" plan "$work/bad.yaml" --portal "sandbox:$work/portal.yaml" >"$work/out" 2>"$work/err"; code=$?
cat "$work/err" "$work/out"
check "exit 1" test "$code" = 1
check "unknown e-mail at 4:15" grep -q 'bad.yaml:4:15: groups\[0\].members\[0\]' "$work/err"
check "unknown user ID at 4:35" grep -q 'bad.yaml:4:35: groups\[0\].members\[1\]' "$work/err"
check "ambiguous e-mail at 6:15" grep -q 'bad.yaml:6:15: .*#61, #62' "$work/err"
check "unknown group name at 7:11" grep -q 'bad.yaml:7:11: groups\[2\].name' "$work/err"
check "Sales still planned" grep -q '"Sales" (#42)' "$work/out"

echo; echo "3. Invite mode: apply invites; plan then shows the invitation pending and"
echo "   --detailed-exitcode exits 0; a second apply sends no invitation."
fresh; serve
printf 'version: 1\nadd_with: invite\ninvite_message: Join us\ngroups:\n  - name: Sales\n    prune: false\n    members: [ed@example.com]\n' >"$work/invite.yaml"
"$roster" apply "$work/invite.yaml" --portal "$url" --auto-approve
"$roster" plan "$work/invite.yaml" --portal "$url" --detailed-exitcode; code=$?
check "plan exits 0 after the invitation" test "$code" = 0
"$roster" apply "$work/invite.yaml" --portal "$url" --auto-approve
check "one invitation sent in all" test "$(counter "['methods']['sonet_group.user.invite']['commands']")" = 1
stop

echo; echo "4. Owner transfer: without the flag nothing changes and the plan says why; with it the"
echo "   owner moves and the old owner's role is reconciled; a non-owner webhook is told."
fresh
printf 'version: 1\ngroups:\n  - name: Marketing\n    owner: bo@example.com\n    moderators: [ada@example.com]\n    members: [cy@example.com, fay@example.com]\n' >"$work/transfer.yaml"
printf 'version: 1\ngroups:\n  - id: 27\n    owner: ed@example.com\n    moderators: [di@example.com]\n    members: [gus@example.com]\n' >"$work/not-ours.yaml"
"$roster" plan "$work/transfer.yaml" --portal "sandbox:$work/portal.yaml" | tee "$work/out"
check "the plan says how" grep -q -- '--allow-owner-change' "$work/out"
"$roster" plan "$work/not-ours.yaml" --portal "sandbox:$work/portal.yaml" --allow-owner-change 2>"$work/err"
cat "$work/err"
check "a non-owner webhook is told at plan time" grep -q 'warning: .*owner' "$work/err"
"$roster" apply "$work/transfer.yaml" --portal "sandbox:$work/portal.yaml" --allow-owner-change --auto-approve
group15() { awk '/^  - id: 15$/{on=1; next} /^  - id:/{on=0} on' "$work/portal.yaml"; }
group15
check "ownership moved to bo" bash -c "grep -q '{ user: 10, role: A }' <<<\"\$(awk '/^  - id: 15\$/{on=1; next} /^  - id:/{on=0} on' '$work/portal.yaml')\""
check "old owner now moderator" bash -c "grep -q '{ user: 1, role: E }' <<<\"\$(awk '/^  - id: 15\$/{on=1; next} /^  - id:/{on=0} on' '$work/portal.yaml')\""

echo; echo "5. OAuth: an expired access token is refreshed once and the run succeeds; a revoked"
echo "   refresh token fails with what to do; no token appears in any output."
for revoked in false true; do
  fresh
  cat >>"$work/portal.yaml" <<EOF
oauth:
  clients:
    - { client_id: local.try, client_secret: trysecret000000001 }
  tokens:
    - { access_token: tryaccesstoken000000001, user: 1, expires_at: 1 }
  refresh_tokens:
    - { refresh_token: tryrefreshtoken00000001, client_id: local.try, user: 1, revoked: $revoked }
EOF
  serve
  rm -f "$work/tokens.json"
  ROSTER_OAUTH_ACCESS_TOKEN=tryaccesstoken000000001 ROSTER_OAUTH_REFRESH_TOKEN=tryrefreshtoken00000001 \
  ROSTER_OAUTH_CLIENT_ID=local.try ROSTER_OAUTH_CLIENT_SECRET=trysecret000000001 ROSTER_OAUTH_SERVER="$base" \
    "$roster" plan examples/groups.yaml --portal "$base/rest/" --oauth-token-file "$work/tokens.json" -v \
    >"$work/out" 2>"$work/err"; code=$?
  cat "$work/err"
  if [ "$revoked" = false ]; then
    check "refreshed once, exit 0" test "$code.$(counter "['oauth_token_requests']")" = 0.1
    check "tokens kept with mode 600" test "$(stat -c %a "$work/tokens.json" 2>/dev/null)" = 600
  else
    check "revoked: exit 1 and what to do" grep -q 'invalid_grant.*authori' "$work/err"
  fi
  check "no token in the output" bash -c "! grep -qiE 'tryaccesstoken|tryrefreshtoken|trysecret' '$work/out' '$work/err'"
  stop
done

echo; echo "6. A non-admin webhook: plan warns, apply refuses before sending any write."
fresh
sed -i 's/^  - { user: 1, code: sandboxcode0001 }/&\n  - { user: 10, code: memberscode0010 }/' "$work/portal.yaml"
serve
member=${url/\/1\/sandboxcode0001\//\/10\/memberscode0010\/}
"$roster" plan examples/groups.yaml --portal "$member" >/dev/null 2>"$work/err"
cat "$work/err"
check "plan warns" grep -q 'warning: .*administrator' "$work/err"
"$roster" apply examples/groups.yaml --portal "$member" --auto-approve >/dev/null 2>&1
check "apply sent no write" test "$(counter "['write_commands']")" = 0
stop

echo; echo "7. The request bound: cargo bench --bench reconcile -- --users 10000 --emails (BENCHMARKS.md)."
exit $failed
