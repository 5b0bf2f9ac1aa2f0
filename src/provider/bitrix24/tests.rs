//! Unit tests of write coalescing and result judging (no network: the round trips against the
//! sandbox live in tests/it).

use std::collections::BTreeSet;

use serde_json::json;

use super::*;

/// What a command that got these answers from the portal looks like.
fn answered(got: Vec<Result<Value, String>>) -> Answers {
    Answers {
        got,
        executed: true,
        ..Answers::default()
    }
}

fn cmds(changes: &[(GroupId, Change)]) -> Vec<String> {
    coalesce(changes, &BTreeMap::new())
        .iter()
        .map(|w| w.command.to_cmd().replace("%5B", "[").replace("%5D", "]"))
        .collect()
}

#[test]
fn one_command_per_group_and_kind_in_dependency_order() {
    let g = GroupId::Num(15);
    let u = UserId::Num;
    let changes = [
        (
            g,
            Change::Remove {
                user: u(30),
                role: Role::Member,
            },
        ),
        (
            g,
            Change::Add {
                user: u(10),
                role: Role::Moderator,
            },
        ),
        (
            g,
            Change::Add {
                user: u(22),
                role: Role::Member,
            },
        ),
        (
            g,
            Change::SetRole {
                user: u(21),
                from: Role::Moderator,
                to: Role::Member,
            },
        ),
        (
            g,
            Change::SetRole {
                user: u(23),
                from: Role::Member,
                to: Role::Moderator,
            },
        ),
        (
            GroupId::Num(7),
            Change::Remove {
                user: u(5),
                role: Role::Moderator,
            },
        ),
        (
            g,
            Change::Remove {
                user: u(31),
                role: Role::Moderator,
            },
        ),
    ];
    assert_eq!(
        cmds(&changes),
        [
            "sonet_group.user.delete?GROUP_ID=7&USER_ID[0]=5",
            "sonet_group.user.add?GROUP_ID=15&USER_ID[0]=10&USER_ID[1]=22",
            "sonet_group.user.update?GROUP_ID=15&USER_ID[0]=10&USER_ID[1]=23&ROLE=E",
            "sonet_group.user.update?GROUP_ID=15&USER_ID[0]=21&ROLE=K",
            "sonet_group.user.delete?GROUP_ID=15&USER_ID[0]=30&USER_ID[1]=31",
        ]
    );
}

#[test]
fn silently_skipped_users_are_not_done() {
    let changes = [
        (
            GroupId::Num(1),
            Change::Add {
                user: UserId::Num(2),
                role: Role::Member,
            },
        ),
        (
            GroupId::Num(1),
            Change::Add {
                user: UserId::Num(3),
                role: Role::Member,
            },
        ),
    ];
    let writes = coalesce(&changes, &BTreeMap::new());
    let mut verdicts = vec![Vec::new(); 2];
    judge(
        &writes[0],
        &answered(vec![Ok(json!(["2"]))]),
        &changes,
        &mut verdicts,
    );
    assert_eq!(verdicts[0], [OpStatus::Done]);
    assert!(matches!(verdicts[1][0], OpStatus::NotDone { .. }));
}

#[test]
fn command_errors_fail_every_change_they_carry() {
    let changes = [(
        GroupId::Num(1),
        Change::Remove {
            user: UserId::Num(2),
            role: Role::Member,
        },
    )];
    let writes = coalesce(&changes, &BTreeMap::new());
    let mut verdicts = vec![Vec::new()];
    let err = ApiError {
        method: "sonet_group.user.delete".into(),
        code: String::new(),
        description: "No permissions to update users role".into(),
        status: None,
    };
    judge(
        &writes[0],
        &answered(vec![Err(err.to_string())]),
        &changes,
        &mut verdicts,
    );
    match &verdicts[0][0] {
        OpStatus::Failed { error } => {
            assert_eq!(
                error,
                "sonet_group.user.delete: error (No permissions to update users role)"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn any_answer_confirming_a_user_makes_it_done() {
    let changes = [
        (
            GroupId::Num(1),
            Change::Remove {
                user: UserId::Num(2),
                role: Role::Member,
            },
        ),
        (
            GroupId::Num(1),
            Change::Remove {
                user: UserId::Num(3),
                role: Role::Member,
            },
        ),
        (
            GroupId::Num(1),
            Change::Remove {
                user: UserId::Num(4),
                role: Role::Member,
            },
        ),
    ];
    let writes = coalesce(&changes, &BTreeMap::new());
    let mut verdicts = vec![Vec::new(); 3];
    // First run removed 2; a re-send (after the group was deferred) answered [] for 2, removed
    // 3, and a third try failed outright. 4 was never confirmed, but the portal did answer.
    let answers = answered(vec![
        Ok(json!(["2"])),
        Ok(json!([3])),
        Err("batch: error (x)".to_owned()),
    ]);
    judge(&writes[0], &answers, &changes, &mut verdicts);
    assert_eq!(verdicts[0], [OpStatus::Done]);
    assert_eq!(verdicts[1], [OpStatus::Done]);
    assert!(
        matches!(verdicts[2][0], OpStatus::NotDone { .. }),
        "{:?}",
        verdicts[2]
    );
}

#[test]
fn a_change_is_held_when_the_group_shows_it() {
    let group = CurrentGroup {
        members: [
            (UserId::Num(1), Role::Owner),
            (UserId::Num(2), Role::Moderator),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    assert!(holds(
        &group,
        &Change::Add {
            user: UserId::Num(2),
            role: Role::Moderator
        }
    ));
    assert!(!holds(
        &group,
        &Change::Add {
            user: UserId::Num(2),
            role: Role::Member
        }
    ));
    assert!(holds(
        &group,
        &Change::SetRole {
            user: UserId::Num(2),
            from: Role::Member,
            to: Role::Moderator
        }
    ));
    assert!(holds(
        &group,
        &Change::Remove {
            user: UserId::Num(3),
            role: Role::Member
        }
    ));
    assert!(!holds(
        &group,
        &Change::Remove {
            user: UserId::Num(2),
            role: Role::Member
        }
    ));
}

#[test]
fn transient_errors_are_the_retryable_ones() {
    let api = |code: &str, status| {
        CallError::Api(ApiError {
            method: "batch".into(),
            code: code.into(),
            description: String::new(),
            status: Some(status),
        })
    };
    assert!(api("QUERY_LIMIT_EXCEEDED", 503).is_transient());
    assert!(
        !api("OPERATION_TIME_LIMIT", 429).is_transient(),
        "throttling waits for the budget instead"
    );
    assert!(api("", 502).is_transient());
    assert!(!api("NO_AUTH_FOUND", 401).is_transient());
    assert!(api("INTERNAL_SERVER_ERROR", 500).is_transient());
    assert!(!api("insufficient_scope", 403).is_transient());
    assert!(api("OPERATION_TIME_LIMIT", 429).is_throttle());
    let transport = |kind, status| {
        CallError::Transport(TransportError {
            method: "batch".into(),
            status,
            detail: String::new(),
            kind,
        })
    };
    use TransportKind::*;
    for kind in [Connect, Timeout, NoAnswer, Truncated] {
        assert!(transport(kind, None).is_transient(), "{kind:?}");
    }
    assert!(
        transport(BadAnswer, Some(502)).is_transient(),
        "a proxy's HTML 502"
    );
    assert!(
        !transport(BadAnswer, Some(302)).is_transient(),
        "a moved portal"
    );
    assert!(
        !transport(BadAnswer, Some(200)).is_transient(),
        "a whole 200 that is not JSON"
    );
    assert!(
        transport(Truncated, Some(200)).is_transient(),
        "JSON cut off"
    );
    assert!(!transport(NotSent, None).is_transient());
    assert!(!transport(Interrupted, None).is_transient());
}

/// Which failures may hide a change the portal made, and which trip the breaker.
#[test]
fn what_an_error_says_about_the_portal() {
    let api = |code: &str, status| {
        CallError::Api(ApiError {
            method: "batch".into(),
            code: code.into(),
            description: String::new(),
            status,
        })
    };
    let transport = |kind| {
        CallError::Transport(TransportError {
            method: "batch".into(),
            status: None,
            detail: String::new(),
            kind,
        })
    };
    use TransportKind::*;
    // Refused before acting: the portal's bucket, its operating budget, a manual block, "no".
    for e in [
        api("QUERY_LIMIT_EXCEEDED", Some(503)),
        api("OVERLOAD_LIMIT", Some(503)),
        api("OPERATION_TIME_LIMIT", Some(429)),
        api("NO_AUTH_FOUND", Some(401)),
        api("", Some(400)),
        transport(Connect),
        transport(NotSent),
        transport(Interrupted),
    ] {
        assert!(!e.may_have_acted(), "{e:?}");
    }
    for e in [
        api("INTERNAL_SERVER_ERROR", Some(500)),
        api("", Some(502)),
        transport(Timeout),
        transport(NoAnswer),
        transport(Truncated),
        transport(BadAnswer),
    ] {
        assert!(e.may_have_acted(), "{e:?}");
    }
    for kind in [Connect, Timeout, NoAnswer] {
        assert!(transport(kind).is_no_answer());
    }
    assert!(
        !transport(Truncated).is_no_answer(),
        "the portal answered, if badly"
    );
    assert!(api("NO_AUTH_FOUND", Some(401)).is_run_wide());
    assert!(api("PORTAL_DELETED", Some(403)).is_run_wide());
    assert!(!api("", Some(400)).is_run_wide());
    assert!(
        !api("ACCESS_DENIED", None).is_run_wide(),
        "one command's refusal"
    );
}

fn add(user: u64, role: Role) -> Change {
    Change::Add {
        user: UserId::Num(user),
        role,
    }
}

fn group(members: &[(u64, Role)]) -> CurrentGroup {
    CurrentGroup {
        members: members.iter().map(|&(u, r)| (UserId::Num(u), r)).collect(),
        ..Default::default()
    }
}

/// Settling a change no answer confirmed, case by case.
#[test]
fn settling_unconfirmed_changes() {
    let not_done = || OpStatus::NotDone {
        reason: "skipped".into(),
    };
    let failed = || OpStatus::Failed {
        error: "batch: HTTP 502".into(),
    };
    let change = add(5, Role::Member);
    let held = group(&[(1, Role::Owner), (5, Role::Member)]);
    let missing = group(&[(1, Role::Owner)]);
    let lost = Some(Uncertain {
        cause: "batch: HTTP 502, not JSON",
        still_running: false,
    });
    let check = |status: OpStatus, uncertain: Option<Uncertain>, reread, want: &OpStatus| {
        let got = settle(&change, status.clone(), uncertain, reread);
        match (want, &got) {
            (OpStatus::Unknown { .. }, OpStatus::Unknown { error }) => {
                assert!(
                    error.contains("HTTP 502") && error.contains("timed out"),
                    "{error}"
                )
            }
            _ => assert_eq!(&got, want, "{status:?} {uncertain:?} {reread:?}"),
        }
    };
    // Held: confirmed, whatever the answers said.
    for s in [not_done(), failed()] {
        for u in [None, lost] {
            check(s.clone(), u, Ok(&held), &OpStatus::Confirmed);
        }
    }
    // Not held: as answered, with its reason.
    for s in [not_done(), failed()] {
        for u in [None, lost] {
            check(s.clone(), u, Ok(&missing), &s);
        }
    }
    // Unreadable: unknown if the portal may have acted, else as answered.
    let unknown = OpStatus::Unknown {
        error: String::new(),
    };
    for s in [not_done(), failed()] {
        check(s.clone(), lost, Err("timed out"), &unknown);
        check(s.clone(), None, Err("timed out"), &s);
    }
    // Done, confirmed and never sent stand, even if the group now says otherwise.
    for s in [OpStatus::Done, OpStatus::Confirmed, OpStatus::NotStarted] {
        check(s.clone(), lost, Ok(&missing), &s);
        check(s.clone(), lost, Err("timed out"), &s);
    }
    // A request that timed out may still land after the re-read: not held proves nothing.
    let timed_out = Some(Uncertain {
        cause: "batch: no answer within 30 s (--timeout)",
        still_running: true,
    });
    for s in [not_done(), failed()] {
        match settle(&change, s, timed_out, Ok(&missing)) {
            OpStatus::Unknown { error } => {
                assert!(error.contains("may still be running"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            settle(&change, failed(), timed_out, Ok(&held)),
            OpStatus::Confirmed
        );
    }
}

#[test]
fn interrupted_commands_that_never_ran_are_not_started() {
    let changes = [
        (GroupId::Num(1), add(2, Role::Moderator)),
        (GroupId::Num(1), add(3, Role::Member)),
    ];
    let writes = coalesce(&changes, &BTreeMap::new());
    assert_eq!(writes.len(), 2, "an add, then a promote");
    let never = Answers {
        interrupted: true,
        ..Answers::default()
    };
    // Deferred by the portal, then interrupted before the re-send: still never ran.
    let deferred = Answers {
        got: vec![Err("batch: QUERY_LIMIT_EXCEEDED (Too many requests)".into())],
        interrupted: true,
        ..Answers::default()
    };
    for a in [&never, &deferred] {
        let mut verdicts = vec![Vec::new(); 2];
        judge(&writes[0], a, &changes, &mut verdicts);
        judge(&writes[1], a, &changes, &mut verdicts);
        let statuses: Vec<OpStatus> = verdicts.into_iter().map(combine).collect();
        assert_eq!(statuses, [OpStatus::NotStarted, OpStatus::NotStarted]);
    }
    // The add ran, the promote never did: the change is not "not started".
    let mut verdicts = vec![Vec::new(); 2];
    judge(
        &writes[0],
        &answered(vec![Ok(json!([2, 3]))]),
        &changes,
        &mut verdicts,
    );
    judge(&writes[1], &never, &changes, &mut verdicts);
    let statuses: Vec<OpStatus> = verdicts.into_iter().map(combine).collect();
    assert!(
        matches!(&statuses[0], OpStatus::Failed { error } if error.contains("interrupted")),
        "{statuses:?}"
    );
    assert_eq!(statuses[1], OpStatus::Done);
    // Sent, no answer, then interrupted: the unanswered attempt is the error, to be settled.
    let unanswered = Answers {
        uncertain: Some("batch: no answer within 30 s (--timeout)".into()),
        executed: true,
        interrupted: true,
        ..Answers::default()
    };
    let mut verdicts = vec![Vec::new(); 2];
    judge(&writes[0], &unanswered, &changes, &mut verdicts);
    assert_eq!(
        verdicts[1],
        [OpStatus::Failed {
            error: "batch: no answer within 30 s (--timeout)".into()
        }]
    );
}

/// Progress adds up to the number of changes: a change carried by two commands counts once,
/// with the later one.
#[test]
fn progress_counts_changes() {
    let changes = [
        (GroupId::Num(1), add(2, Role::Moderator)),
        (GroupId::Num(1), add(3, Role::Member)),
        (
            GroupId::Num(1),
            Change::SetRole {
                user: UserId::Num(4),
                from: Role::Member,
                to: Role::Moderator,
            },
        ),
        (
            GroupId::Num(2),
            Change::Remove {
                user: UserId::Num(5),
                role: Role::Member,
            },
        ),
    ];
    let writes = coalesce(&changes, &BTreeMap::new());
    // add(2,3), update(2,4 → E), delete(5)
    assert_eq!(progress_weights(&writes, changes.len()), [1, 2, 1]);
}

#[test]
fn batch_commands_go_on_the_wire_in_execution_order() {
    let cmds: Vec<Command> = (0..BATCH_MAX as u64)
        .map(|g| Command::new("sonet_group.user.get").param("ID", g))
        .collect();
    let refs: Vec<&Command> = cmds.iter().collect();
    let (names, body) = batch_body(&refs);
    let text = serde_json::to_string(&body).unwrap();
    // The order of IDs in the serialised text is the order the portal executes them.
    let positions: Vec<usize> = (0..BATCH_MAX)
        .map(|g| text.find(&format!("ID={g}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(names[7], "c07");
}

/// A `time` object near the operating budget pauses that method until `operating_reset_at`
/// (measured from the portal's own `finish`, so clock skew does not matter).
#[tokio::test(start_paused = true)]
async fn time_objects_feed_the_operating_budget() {
    let client = Client::new(
        Webhook::parse("http://127.0.0.1:1/rest/1/code1234/").unwrap(),
        Options::default(),
    )
    .unwrap();
    let time = |operating: f64| {
        json!({"start": 1773850553.0, "finish": 1773850553.26, "duration": 0.26, "processing": 0.2,
               "date_start": "2026-03-18T19:15:53+03:00", "date_finish": "2026-03-18T19:15:53+03:00",
               "operating_reset_at": 1773850583, "operating": operating})
    };
    client.observe_time("sonet_group.user.get", &time(12.5));
    assert_eq!(
        client.operating.wait_for("sonet_group.user.get"),
        Duration::ZERO
    );
    client.observe_time("sonet_group.user.get", &time(471.0));
    let wait = client.operating.wait_for("sonet_group.user.get");
    assert!((29.7..=29.8).contains(&wait.as_secs_f64()), "{wait:?}");
    assert_eq!(
        client.operating.wait_for("batch"),
        Duration::ZERO,
        "per method"
    );
    // A reset absurdly far away (a portal reporting milliseconds, or garbage) is capped at the
    // 10-minute window instead of panicking or stalling.
    let mut far = time(479.0);
    far["operating_reset_at"] = json!(1e300);
    client.observe_time("user.get", &far);
    assert_eq!(
        client.operating.wait_for("user.get"),
        Duration::from_secs(600)
    );
    // Without operating fields (older portals, self-hosted without the limiter) nothing is tracked.
    client.observe_time("batch", &json!({"start": 1.0, "finish": 2.0}));
    assert_eq!(client.operating.wait_for("batch"), Duration::ZERO);
}

/// An add as moderator that only got as far as the add says so, rather than reading as if
/// nothing happened. (Found by the adversarial campaign: "failed … HTTP 502" for a user the
/// portal held as a member.)
#[test]
fn a_half_done_add_as_moderator_says_so() {
    let change = add(5, Role::Moderator);
    let as_member = group(&[(1, Role::Owner), (5, Role::Member)]);
    let failed = OpStatus::Failed {
        error: "batch: HTTP 502".into(),
    };
    let lost = Some(Uncertain {
        cause: "lost",
        still_running: false,
    });
    match settle(&change, failed, lost, Ok(&as_member)) {
        OpStatus::Failed { error } => {
            assert!(
                error.starts_with("only half done: the portal added the user as a member"),
                "{error}"
            );
            assert!(error.contains("HTTP 502"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let absent = group(&[(1, Role::Owner)]);
    let not_done = OpStatus::NotDone {
        reason: "skipped".into(),
    };
    assert_eq!(
        settle(&change, not_done.clone(), None, Ok(&absent)),
        not_done
    );
}

fn users(ids: &[u64]) -> BTreeSet<UserId> {
    ids.iter().copied().map(UserId::Num).collect()
}

/// The documented example answer of `socialnetwork.api.workgroup.get` (b24restdocs
/// `api-reference/sonet-group/socialnetwork-api-workgroup-get.md`), trimmed to what roster reads.
#[test]
fn workgroup_answers_as_documented() {
    let v = json!({
        "ID": 622, "NAME": "Group for Demonstrating the Method", "OWNER_ID": 1,
        "INITIATE_PERMS": "K", "MEMBERS": [1, 10, 20], "ORDINARY_MEMBERS": [10],
        "INVITED_MEMBERS": [38], "MODERATOR_MEMBERS": [20], "DEPARTMENTS": [8],
        "LIST_OF_MEMBERS_AWAITING_INVITE": [{"id": 41, "name": "Ann", "photo": ""}],
        "TYPE": "group", "VISIBLE": "Y"
    });
    let g = workgroup(&v).unwrap();
    assert_eq!(
        g.members,
        [
            (UserId::Num(1), Role::Owner),
            (UserId::Num(10), Role::Member),
            (UserId::Num(20), Role::Moderator)
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(g.invited, users(&[38]));
    assert_eq!(g.requested, users(&[41]));
    assert_eq!(g.departments, [8]);
    assert_eq!(
        g.name.as_deref(),
        Some("Group for Demonstrating the Method")
    );
    assert_eq!(g.initiate_perms, Some(Role::Member));
    assert_eq!(g.visible, Some(true));
}

/// Every shape the reader tolerates: numeric strings, lists as objects, missing lists, the
/// owner also listed as moderator, a member without `MEMBERS`, a user in two lists.
#[test]
fn workgroup_answers_in_tolerated_shapes() {
    let v = json!({
        "OWNER_ID": "5", "MODERATOR_MEMBERS": ["5", "6"], "ORDINARY_MEMBERS": {"0": "7"},
        "INVITED_MEMBERS": ["7", 8], "LIST_OF_MEMBERS_AWAITING_INVITE": {"a": {"id": "8"}, "b": {"id": "9"}},
        "DEPARTMENTS": ["12", 3], "INITIATE_PERMS": "E", "NAME": "", "VISIBLE": false
    });
    let g = workgroup(&v).unwrap();
    assert_eq!(g.owner(), Some(UserId::Num(5)));
    assert_eq!(g.members.get(&UserId::Num(6)), Some(&Role::Moderator));
    assert_eq!(g.members.get(&UserId::Num(7)), Some(&Role::Member));
    assert_eq!(g.invited, users(&[8]), "a member is not also invited");
    assert_eq!(
        g.requested,
        users(&[9]),
        "an invited user is not also asking"
    );
    assert_eq!(g.departments, [3, 12]);
    assert_eq!(g.name, None);
    assert_eq!(g.initiate_perms, Some(Role::Moderator));
    assert_eq!(g.visible, Some(false));
    for (visible, read) in [
        (json!("N"), Some(false)),
        (json!("y"), Some(true)),
        (json!(true), Some(true)),
        (json!(""), None),
        (json!("maybe"), None),
        (json!(null), None),
    ] {
        let g = workgroup(&json!({"OWNER_ID": 1, "VISIBLE": visible})).unwrap();
        assert_eq!(g.visible, read, "{visible}");
    }
    // Nothing but the owner: everything else empty.
    let bare = workgroup(&json!({"OWNER_ID": 1, "MEMBERS": null, "DEPARTMENTS": false})).unwrap();
    assert_eq!(bare.members.len(), 1);
    assert!(bare.invited.is_empty() && bare.requested.is_empty() && bare.departments.is_empty());
    assert_eq!((bare.initiate_perms, bare.visible), (None, None));
    // Not a group at all.
    assert!(workgroup(&json!([])).is_err());
    assert!(workgroup(&json!(true)).is_err());
}

#[test]
fn reads_ask_for_departments_and_requests_or_fall_back() {
    let text = |c: Command| c.to_cmd().replace("%5B", "[").replace("%5D", "]");
    assert_eq!(
        text(read_command(GroupId::Num(15), false)),
        "socialnetwork.api.workgroup.get?params[groupId]=15&params[select][0]=DEPARTMENTS&params[select][1]=LIST_OF_MEMBERS_AWAITING_INVITE"
    );
    assert_eq!(
        text(read_command(GroupId::Num(15), true)),
        "sonet_group.user.get?ID=15"
    );
    assert!(refuses_method(Some("insufficient_scope")));
    assert!(refuses_method(Some("ERROR_METHOD_NOT_FOUND")));
    assert!(!refuses_method(Some(
        "SONET_CONTROLLER_WORKGROUP_NOT_FOUND"
    )));
    assert!(!refuses_method(Some("")));
    assert!(!refuses_method(None));
}

fn invite(user: u64) -> Change {
    Change::Invite {
        user: UserId::Num(user),
        role: Role::Member,
    }
}

fn set_owner(from: u64, to: u64) -> Change {
    Change::SetOwner {
        from: Some(UserId::Num(from)),
        to: UserId::Num(to),
    }
}

#[test]
fn invites_carry_their_groups_message_and_owner_changes_go_alone() {
    let changes = [
        (GroupId::Num(3), invite(31)),
        (GroupId::Num(2), set_owner(1, 21)),
        (GroupId::Num(2), invite(22)),
        (GroupId::Num(2), invite(23)),
        (
            GroupId::Num(2),
            Change::Accept {
                user: UserId::Num(24),
                role: Role::Member,
            },
        ),
        (GroupId::Num(2), add(25, Role::Member)),
        (
            GroupId::Num(2),
            Change::SetRole {
                user: UserId::Num(1),
                from: Role::Member,
                to: Role::Moderator,
            },
        ),
    ];
    let messages: BTreeMap<GroupId, String> = [(GroupId::Num(2), "Welcome & hi".to_owned())].into();
    let text: Vec<String> = coalesce(&changes, &messages)
        .iter()
        .map(|w| w.command.to_cmd().replace("%5B", "[").replace("%5D", "]"))
        .collect();
    assert_eq!(
        text,
        [
            "sonet_group.user.invite?GROUP_ID=2&USER_ID[0]=22&USER_ID[1]=23&MESSAGE=Welcome+%26+hi",
            "sonet_group.user.add?GROUP_ID=2&USER_ID[0]=25",
            "sonet_group.user.update?GROUP_ID=2&USER_ID[0]=1&ROLE=E",
            "sonet_group.user.update?GROUP_ID=2&USER_ID[0]=24&ROLE=K",
            "sonet_group.setowner?GROUP_ID=2&USER_ID=21",
            "sonet_group.user.invite?GROUP_ID=3&USER_ID[0]=31",
        ]
    );
    // execute's phases: owner changes only, then the rest.
    let owners = coalesce_only(&changes, &messages, &|i| {
        matches!(changes[i].1, Change::SetOwner { .. })
    });
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].carries, [(1, UserId::Num(21))]);
}

#[test]
fn an_invite_the_portal_skipped_is_not_done() {
    let changes = [(GroupId::Num(1), invite(2)), (GroupId::Num(1), invite(3))];
    let writes = coalesce(&changes, &BTreeMap::new());
    let mut verdicts = vec![Vec::new(); 2];
    judge(
        &writes[0],
        &answered(vec![Ok(json!([3]))]),
        &changes,
        &mut verdicts,
    );
    assert_eq!(verdicts[1], [OpStatus::Done]);
    match &verdicts[0][0] {
        OpStatus::NotDone { reason } => assert!(
            reason.starts_with("not done: already related or not invitable"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Settled by the re-read: invited or a member holds; otherwise it stays not done.
    let status = verdicts[0][0].clone();
    let mut shown = group(&[(1, Role::Owner)]);
    assert_eq!(settle(&invite(2), status.clone(), None, Ok(&shown)), status);
    shown.invited.insert(UserId::Num(2));
    assert_eq!(
        settle(&invite(2), status.clone(), None, Ok(&shown)),
        OpStatus::Confirmed
    );
    let member = group(&[(1, Role::Owner), (2, Role::Member)]);
    assert_eq!(
        settle(&invite(2), status, None, Ok(&member)),
        OpStatus::Confirmed
    );
}

#[test]
fn owner_changes_are_judged_by_true() {
    let changes = [(GroupId::Num(1), set_owner(1, 5))];
    let writes = coalesce(&changes, &BTreeMap::new());
    let verdict = |got| {
        let mut verdicts = vec![Vec::new()];
        judge(&writes[0], &answered(got), &changes, &mut verdicts);
        verdicts.remove(0).remove(0)
    };
    assert_eq!(verdict(vec![Ok(json!(true))]), OpStatus::Done);
    assert!(matches!(
        verdict(vec![Ok(json!(false))]),
        OpStatus::NotDone { reason } if reason.contains("owner")
    ));
    // An opaque error (code "0", or empty), as the reference warns.
    let e = ApiError {
        method: "sonet_group.setowner".into(),
        code: "0".into(),
        description: "Insufficient permissions to complete the operation.".into(),
        status: None,
    };
    assert_eq!(
        verdict(vec![Err(e.to_string())]),
        OpStatus::Failed {
            error: "sonet_group.setowner: 0 (Insufficient permissions to complete the operation.)"
                .into()
        }
    );
    assert!(matches!(
        verdict(vec![Ok(json!(["5"]))]),
        OpStatus::Failed { error } if error.contains("unexpected result")
    ));
    // Settled: the re-read shows the new owner, or not.
    let failed = OpStatus::Failed { error: "x".into() };
    let moved = group(&[(1, Role::Member), (5, Role::Owner)]);
    let stayed = group(&[(1, Role::Owner), (5, Role::Member)]);
    assert_eq!(
        settle(&set_owner(1, 5), failed.clone(), None, Ok(&moved)),
        OpStatus::Confirmed
    );
    assert_eq!(
        settle(&set_owner(1, 5), failed.clone(), None, Ok(&stayed)),
        failed
    );
}

/// The old owner's changes wait for the owner change: held back unless it was confirmed.
#[test]
fn the_old_owners_changes_wait_for_the_owner_change() {
    let changes = [
        (GroupId::Num(1), set_owner(1, 5)),
        (
            GroupId::Num(1),
            Change::Remove {
                user: UserId::Num(1),
                role: Role::Member,
            },
        ),
        (GroupId::Num(1), add(7, Role::Member)),
        (
            GroupId::Num(2),
            Change::Remove {
                user: UserId::Num(1),
                role: Role::Member,
            },
        ),
    ];
    let with_owner = |status: OpStatus| {
        let mut verdicts = vec![Vec::new(); changes.len()];
        verdicts[0].push(status);
        held_back(&changes, &verdicts)
    };
    assert!(with_owner(OpStatus::Done).is_empty());
    let held = with_owner(OpStatus::Failed {
        error: "sonet_group.setowner: 510 (Insufficient permissions to complete the operation.)"
            .into(),
    });
    assert_eq!(held.keys().copied().collect::<Vec<_>>(), [1], "{held:?}");
    match &held[&1] {
        OpStatus::NotDone { reason } => {
            assert!(
                reason.starts_with("not sent: it waits for the owner change to #5 in group 1"),
                "{reason}"
            );
            assert!(reason.contains("Insufficient permissions"), "{reason}");
            assert!(reason.contains("#1 may still be the owner"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let interrupted = with_owner(OpStatus::NotStarted);
    assert_eq!(interrupted[&1], OpStatus::NotStarted);
    // An owner change with no previous owner holds nothing back.
    let none = [(
        GroupId::Num(1),
        Change::SetOwner {
            from: None,
            to: UserId::Num(5),
        },
    )];
    assert!(held_back(&none, &[vec![OpStatus::NotStarted]]).is_empty());
}

#[test]
fn an_accepted_request_that_did_not_land_says_so() {
    let changes = [(
        GroupId::Num(1),
        Change::Accept {
            user: UserId::Num(9),
            role: Role::Moderator,
        },
    )];
    let writes = coalesce(&changes, &BTreeMap::new());
    assert_eq!(writes[0].command.method, "sonet_group.user.update");
    let mut verdicts = vec![Vec::new()];
    judge(
        &writes[0],
        &answered(vec![Ok(json!([]))]),
        &changes,
        &mut verdicts,
    );
    assert!(
        matches!(&verdicts[0][0], OpStatus::NotDone { reason } if reason.contains("did not admit")),
        "{verdicts:?}"
    );
}

mod lookups {
    use super::super::lookup::*;
    use super::*;
    use crate::model::{Person, Wanted};

    fn text(c: &Command) -> String {
        c.to_cmd()
            .replace("%5B", "[")
            .replace("%5D", "]")
            .replace("%40", "@")
            .replace("%3D", "=")
    }

    fn wanted(emails: usize, ids: usize, names: &[&str]) -> Wanted {
        Wanted {
            emails: (0..emails)
                .map(|i| format!("u{i:05}@example.com"))
                .collect(),
            users: (1..=ids as u64).map(UserId::Num).collect(),
            group_names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn texts(cmds: &[(Ask, Command)]) -> Vec<String> {
        cmds.iter().map(|(_, c)| text(c)).collect()
    }

    #[test]
    fn commands_are_exact_and_chunked() {
        let mut w = wanted(0, 2, &["Sales_EU"]);
        w.emails = ["a_b@x.io".to_owned(), "c%d@x.io".to_owned()].into();
        let (open, cmds) = first_round(&w);
        assert!(!open.list_users && !open.list_groups);
        assert_eq!(
            texts(&cmds),
            [
                "user.current?",
                "user.admin?",
                "user.get?FILTER[@EMAIL][0]=a_b@x.io&FILTER[@EMAIL][1]=c%25d@x.io",
                "user.get?FILTER[@ID][0]=1&FILTER[@ID][1]=2",
                "sonet_group.get?IS_ADMIN=Y&FILTER[=NAME]=Sales_EU",
            ]
        );
        // 50 values a command.
        let (_, big) = first_round(&wanted(120, 51, &[]));
        let per: Vec<usize> = big.iter().skip(2).map(|(_, c)| c.params.len()).collect();
        assert_eq!(per, [50, 50, 20, 50, 1]);
    }

    /// More than fits beside the caller: the first request carries the lists' first pages
    /// (a kind whose lookups all fit gets none) and direct lookups fill it, users first.
    #[test]
    fn the_first_request_reads_the_lists_only_when_lookups_are_left_over() {
        let names: Vec<String> = (0..60).map(|i| format!("g{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (open, cmds) = first_round(&wanted(2_500, 0, &names));
        assert_eq!(
            open,
            Opening {
                list_users: true,
                list_groups: true,
                users: 46,
                groups: 0
            }
        );
        let t = texts(&cmds);
        assert_eq!(cmds.len(), 50);
        assert_eq!(
            t[..4],
            [
                "user.current?",
                "user.admin?",
                "user.get?start=0",
                "sonet_group.get?IS_ADMIN=Y&ORDER[ID]=ASC&start=0",
            ]
        );
        assert!(
            t[4..]
                .iter()
                .all(|c| c.starts_with("user.get?FILTER[@EMAIL]"))
        );
        // Two users' commands fit; only the groups' list is read.
        let (open, cmds) = first_round(&wanted(60, 0, &names));
        assert_eq!(
            open,
            Opening {
                list_users: false,
                list_groups: true,
                users: 2,
                groups: 45
            }
        );
        let t = texts(&cmds);
        assert_eq!(
            t[..3],
            [
                "user.current?",
                "user.admin?",
                "sonet_group.get?IS_ADMIN=Y&ORDER[ID]=ASC&start=0",
            ]
        );
        let per: Vec<usize> = cmds[3..5].iter().map(|(_, c)| c.params.len()).collect();
        assert_eq!(per, [50, 10]);
        assert!(
            t[3..5]
                .iter()
                .all(|c| c.starts_with("user.get?FILTER[@EMAIL]"))
        );
        assert_eq!(t[5], "sonet_group.get?IS_ADMIN=Y&FILTER[=NAME]=g00");
        assert_eq!(t.len(), 50);
        // Pages after the first: `user.get` by offset, `sonet_group.get` by legacy start.
        assert_eq!(text(&user_page(100)), "user.get?start=100");
        assert_eq!(
            text(&group_page(50)),
            "sonet_group.get?IS_ADMIN=Y&ORDER[ID]=ASC&start=50"
        );
    }

    /// Whether a page of a direct user lookup shows the portal ignored its filter: a user
    /// matching none of the values asked (an e-mail compared ignoring case; a user without
    /// `EMAIL`, as with the `user_brief` scope, matches no e-mail), or for IDs a `total`
    /// above the IDs asked. Many users sharing an e-mail are not a sign (rules §1.5 "Scopes";
    /// reference §2.1 "unknown keys are silently ignored").
    #[test]
    fn an_ignored_filter_is_told_from_the_answer() {
        let emails = |v: &[&str]| Asked::Emails(v.iter().map(|e| e.to_string()).collect());
        let ids = |v: &[u64]| Asked::Ids(v.iter().copied().map(UserId::Num).collect());
        let page = serde_json::json!([
            {"ID": "4", "EMAIL": "Dup@Example.com"},
            {"ID": "5", "EMAIL": "dup@example.com"},
        ]);
        let brief = serde_json::json!([{"ID": "4", "NAME": "Dup"}, {"ID": "9"}]);
        let cases = [
            (emails(&["dup@example.com"]), &page, Some(2), false),
            // Shared by more than a page of users: `total` says nothing about e-mails.
            (emails(&["dup@example.com"]), &page, Some(60), false),
            (
                emails(&["dup@example.com", "x@y.z"]),
                &serde_json::json!([]),
                None,
                false,
            ),
            (emails(&["other@example.com"]), &page, Some(2), true),
            (emails(&["dup@example.com"]), &brief, Some(200), true),
            (ids(&[4, 5]), &page, Some(2), false),
            (ids(&[4, 5, 6]), &page, None, false),
            (ids(&[4]), &page, Some(2), true),
            (ids(&[4, 5]), &page, Some(200), true),
            (ids(&[4, 9]), &brief, Some(2), false),
        ];
        for (asked, v, total, want) in cases {
            assert_eq!(asked.ignored(v, total), want, "{asked:?} {v} {total:?}");
        }
    }

    /// The way each kind finishes: the remaining pages of its list when they are fewer than
    /// its direct lookups left, else those lookups (a tie goes to the lookups).
    #[test]
    fn routes() {
        assert_eq!(route(0, Some(10_000)), Route::Direct(0));
        assert_eq!(route(3, None), Route::Direct(3));
        assert_eq!(route(3, Some(0)), Route::List(0));
        assert_eq!(route(3, Some(50)), Route::List(0));
        assert_eq!(route(3, Some(51)), Route::List(1));
        assert_eq!(route(3, Some(200)), Route::Direct(3), "3 more pages: a tie");
        assert_eq!(route(153, Some(10_000)), Route::Direct(153));
        assert_eq!(route(1_953, Some(2_000)), Route::List(39));
    }

    /// (identities, portal size) → (requests, the bound), users by e-mail and groups by name,
    /// each alone; then both, and every combination of a grid against the shared bound.
    #[test]
    fn request_counts_meet_the_bound() {
        #[track_caller]
        fn users(n: usize, u: u64, expected: usize, bound_is: usize) {
            let got = requests(user_lookups_for(n, 0), 0, u, 0);
            assert_eq!(
                (got, bound(n, u, 0, 0)),
                (expected, bound_is),
                "N = {n}, U = {u}"
            );
        }
        #[track_caller]
        fn groups(g: usize, t: u64, expected: usize, bound_is: usize) {
            let got = requests(0, g, 0, t);
            assert_eq!(
                (got, bound(0, 0, g, t)),
                (expected, bound_is),
                "G = {g}, T = {t}"
            );
        }
        // N, U → requests, bound min(⌈N/50⌉, 1 + ⌈U/2,500⌉) (1 at least: the caller).
        users(0, 10_000, 1, 1);
        users(50, 10, 1, 1);
        users(50, 10_000, 1, 1);
        users(51, 10_000, 1, 2);
        users(60, 10_000, 1, 2);
        users(2_400, 10_000, 1, 5);
        // 49 commands and the caller's two: the users' list is read too.
        users(2_450, 10_000, 2, 5);
        users(2_450, 50, 1, 2);
        users(2_450, 100, 2, 2);
        users(2_500, 10_000, 2, 5);
        users(2_500, 2_000, 2, 2);
        users(2_500, 40, 1, 2);
        users(2_501, 10_000, 2, 5);
        users(2_501, 2_501, 2, 3);
        users(10_000, 10_000, 5, 5);
        users(10_000, 2_000, 2, 2);
        users(10_000, 100, 2, 2);
        users(10_000, 12_500, 5, 6);
        users(10_000, 100_000, 5, 41);
        // G, T → requests, bound min(⌈(G + 3)/50⌉, 1 + ⌈T/2,500⌉).
        groups(0, 2_000, 1, 1);
        groups(3, 2_000, 1, 1);
        groups(48, 2_000, 1, 2);
        groups(49, 2_000, 2, 2);
        groups(49, 50, 1, 2);
        groups(50, 2_000, 2, 2);
        groups(51, 2_000, 2, 2);
        groups(2_000, 2_000, 2, 2);
        groups(2_000, 50, 1, 2);
        groups(2_000, 100_000, 41, 41);
        groups(2_450, 2_500, 2, 2);
        groups(2_500, 2_501, 2, 3);
        groups(10_000, 10_000, 5, 5);
        // Both: the benchmark's 10,000 users named by e-mail and 2,000 groups by name.
        assert_eq!(requests(200, 2_000, 10_000, 2_000), 5);
        assert_eq!(bound(10_000, 10_000, 2_000, 2_000), 5 + 2);
        assert_eq!(requests(1, 1, 10, 10), 1);
        assert_eq!(bound(1, 10, 1, 10), 2);

        let identities = [
            0, 1, 50, 51, 100, 2_350, 2_400, 2_450, 2_500, 2_501, 4_900, 10_000,
        ];
        let names = [
            0, 1, 2, 46, 47, 48, 49, 50, 51, 97, 98, 99, 100, 101, 147, 148, 2_000, 2_500,
        ];
        let sizes = [
            0, 1, 50, 51, 100, 2_000, 2_500, 2_501, 2_550, 5_051, 10_000, 100_000,
        ];
        for &e in &identities {
            for &i in &[0, 1, 50, 51] {
                for &g in &names {
                    for &u in &sizes {
                        for &t in &sizes {
                            let cmds = user_lookups_for(e, i);
                            let got = requests(cmds, g, u, t);
                            let b = bound(e + i, u, g, t);
                            assert!(
                                got <= b,
                                "E = {e}, I = {i}, G = {g}, U = {u}, T = {t}: {got} > {b}"
                            );
                            // Never more than one request over sending every lookup directly.
                            let direct = requests_for(2 + cmds + g);
                            assert!(got <= direct + 1, "{e} {i} {g} {u} {t}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn users_as_the_portal_gives_them() {
        let page = json!([
            {"ID": "21", "EMAIL": "Anna@Example.com", "NAME": "Anna", "LAST_NAME": "Berg", "ACTIVE": true, "USER_TYPE": "employee"},
            {"ID": 22, "EMAIL": "", "NAME": "", "LAST_NAME": "Ortiz", "ACTIVE": "N", "USER_TYPE": "extranet"},
            {"ID": "23", "ACTIVE": "Y"},
            {"EMAIL": "no-id@example.com"}
        ]);
        let people = people_in(&page).unwrap();
        assert_eq!(
            people,
            [
                Person {
                    id: UserId::Num(21),
                    email: Some("Anna@Example.com".into()),
                    name: Some("Anna Berg".into()),
                    active: true,
                    extranet: false
                },
                Person {
                    id: UserId::Num(22),
                    email: None,
                    name: Some("Ortiz".into()),
                    active: false,
                    extranet: true
                },
                Person {
                    id: UserId::Num(23),
                    email: None,
                    name: None,
                    active: true,
                    extranet: false
                },
            ]
        );
        assert!(people_in(&json!([])).unwrap().is_empty());
        assert!(people_in(&json!("x")).is_err());
        assert_eq!(
            caller_id(&json!({"ID": "1", "NAME": "Admin"})),
            Some(UserId::Num(1))
        );
    }

    #[test]
    fn group_names_match_exactly_ignoring_case() {
        let page = json!([
            {"ID": "15", "NAME": "Marketing"},
            {"ID": "16", "NAME": "MARKETING"},
            {"ID": "17", "NAME": "Marketing EU"},
            {"ID": "18", "NAME": "Markéting"}
        ]);
        assert_eq!(
            groups_named(&page, "marketing").unwrap(),
            [
                (GroupId::Num(15), "Marketing".to_owned()),
                (GroupId::Num(16), "MARKETING".to_owned())
            ]
        );
        assert!(groups_named(&json!([]), "x").unwrap().is_empty());
    }
}

/// The breaker's short form: the first outcome naming the cause keeps it whole, later ones
/// say the short form (failures wholly, unknown outcomes in place of the cause); outcomes
/// that do not name the cause, and breakers without a short form, are untouched.
#[test]
fn a_long_run_wide_cause_is_shown_whole_once() {
    let cause = "cannot refresh the OAuth access token: a long message with advice";
    let statuses = || {
        vec![
            OpStatus::Done,
            OpStatus::Failed {
                error: format!("batch: not sent: an earlier request failed ({cause})"),
            },
            OpStatus::Failed {
                error: format!("batch: expired_token ({cause}) [HTTP 401]"),
            },
            OpStatus::Unknown {
                error: format!(
                    "the portal may have made the change (x), and reading the group again failed ({cause})"
                ),
            },
            OpStatus::Failed {
                error: "something else".into(),
            },
        ]
    };
    let plain = Breaker::default();
    plain.trip(cause.into());
    assert_eq!(plain.shorten(statuses()), statuses());
    let b = Breaker::default();
    b.trip_short(cause.into(), "short (see above)");
    let mut want = statuses();
    want[2] = OpStatus::Failed {
        error: "short (see above)".into(),
    };
    want[3] = OpStatus::Unknown {
        error: "the portal may have made the change (x), and reading the group again failed (short (see above))".into(),
    };
    assert_eq!(b.shorten(statuses()), want);
    // A later trip does not change the cause or its short form.
    b.trip_short("another".into(), "other");
    assert_eq!(b.shorten(statuses()), want);
}
