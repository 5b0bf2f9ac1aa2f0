//! Unit tests of write coalescing and result judging (no network: the round trips against the
//! sandbox live in tests/it).

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
    coalesce(changes)
        .iter()
        .map(|w| w.command.to_cmd().replace("%5B", "[").replace("%5D", "]"))
        .collect()
}

#[test]
fn one_command_per_group_and_kind_in_dependency_order() {
    let g = GroupId(15);
    let u = UserId;
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
            GroupId(7),
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
            GroupId(1),
            Change::Add {
                user: UserId(2),
                role: Role::Member,
            },
        ),
        (
            GroupId(1),
            Change::Add {
                user: UserId(3),
                role: Role::Member,
            },
        ),
    ];
    let writes = coalesce(&changes);
    let mut verdicts = vec![Vec::new(); 2];
    judge(&writes[0], &answered(vec![Ok(json!(["2"]))]), &mut verdicts);
    assert_eq!(verdicts[0], [OpStatus::Done]);
    assert!(matches!(verdicts[1][0], OpStatus::NotDone { .. }));
}

#[test]
fn command_errors_fail_every_change_they_carry() {
    let changes = [(
        GroupId(1),
        Change::Remove {
            user: UserId(2),
            role: Role::Member,
        },
    )];
    let writes = coalesce(&changes);
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
            GroupId(1),
            Change::Remove {
                user: UserId(2),
                role: Role::Member,
            },
        ),
        (
            GroupId(1),
            Change::Remove {
                user: UserId(3),
                role: Role::Member,
            },
        ),
        (
            GroupId(1),
            Change::Remove {
                user: UserId(4),
                role: Role::Member,
            },
        ),
    ];
    let writes = coalesce(&changes);
    let mut verdicts = vec![Vec::new(); 3];
    // First run removed 2; a re-send (after the group was deferred) answered [] for 2, removed
    // 3, and a third try failed outright. 4 was never confirmed, but the portal did answer.
    let answers = answered(vec![
        Ok(json!(["2"])),
        Ok(json!([3])),
        Err("batch: error (x)".to_owned()),
    ]);
    judge(&writes[0], &answers, &mut verdicts);
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
        members: [(UserId(1), Role::Owner), (UserId(2), Role::Moderator)]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    assert!(holds(
        &group,
        &Change::Add {
            user: UserId(2),
            role: Role::Moderator
        }
    ));
    assert!(!holds(
        &group,
        &Change::Add {
            user: UserId(2),
            role: Role::Member
        }
    ));
    assert!(holds(
        &group,
        &Change::SetRole {
            user: UserId(2),
            from: Role::Member,
            to: Role::Moderator
        }
    ));
    assert!(holds(
        &group,
        &Change::Remove {
            user: UserId(3),
            role: Role::Member
        }
    ));
    assert!(!holds(
        &group,
        &Change::Remove {
            user: UserId(2),
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
        user: UserId(user),
        role,
    }
}

fn group(members: &[(u64, Role)]) -> CurrentGroup {
    CurrentGroup {
        members: members.iter().map(|&(u, r)| (UserId(u), r)).collect(),
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
        (GroupId(1), add(2, Role::Moderator)),
        (GroupId(1), add(3, Role::Member)),
    ];
    let writes = coalesce(&changes);
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
        judge(&writes[0], a, &mut verdicts);
        judge(&writes[1], a, &mut verdicts);
        let statuses: Vec<OpStatus> = verdicts.into_iter().map(combine).collect();
        assert_eq!(statuses, [OpStatus::NotStarted, OpStatus::NotStarted]);
    }
    // The add ran, the promote never did: the change is not "not started".
    let mut verdicts = vec![Vec::new(); 2];
    judge(
        &writes[0],
        &answered(vec![Ok(json!([2, 3]))]),
        &mut verdicts,
    );
    judge(&writes[1], &never, &mut verdicts);
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
    judge(&writes[0], &unanswered, &mut verdicts);
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
        (GroupId(1), add(2, Role::Moderator)),
        (GroupId(1), add(3, Role::Member)),
        (
            GroupId(1),
            Change::SetRole {
                user: UserId(4),
                from: Role::Member,
                to: Role::Moderator,
            },
        ),
        (
            GroupId(2),
            Change::Remove {
                user: UserId(5),
                role: Role::Member,
            },
        ),
    ];
    let writes = coalesce(&changes);
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
