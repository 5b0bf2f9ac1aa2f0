//! Unit tests of write coalescing and result judging (no network: the round trips against the
//! sandbox live in tests/it).

use serde_json::json;

use super::*;

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
    judge(&writes[0], &[Ok(json!(["2"]))], &mut verdicts);
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
    judge(&writes[0], &[Err(err.to_string())], &mut verdicts);
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
    let answers = [
        Ok(json!(["2"])),
        Ok(json!([3])),
        Err("batch: error (x)".to_owned()),
    ];
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
    let transport = |status| {
        CallError::Transport(TransportError {
            method: "batch".into(),
            status,
            detail: String::new(),
            connect: false,
        })
    };
    assert!(
        transport(None).is_transient(),
        "connection errors and timeouts"
    );
    assert!(transport(Some(502)).is_transient(), "a proxy's HTML 502");
    assert!(!transport(Some(302)).is_transient(), "a moved portal");
    assert!(
        !transport(Some(200)).is_transient(),
        "a 200 that is not JSON"
    );
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
        Webhook::parse("http://127.0.0.1:1/rest/1/code/").unwrap(),
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
