//! Renderer tests: plans made from a file, a directory of people and a compact current state,
//! shown as text and JSON (inline snapshots).

use super::{Style, json, text};
use crate::model::{
    Caller, CurrentGroup, CurrentState, DesiredGroup, DesiredState, Directory, GroupId, Lookups,
    OpStatus, Person, Role, System, UserId, Uuid,
};
use crate::plan::{self, Change, Options, Plan};

pub(super) fn person(
    id: u64,
    email: Option<&str>,
    name: Option<&str>,
    active: bool,
    extranet: bool,
) -> Person {
    Person {
        id: UserId::Num(id),
        email: email.map(str::to_owned),
        name: name.map(str::to_owned),
        active,
        extranet,
    }
}

/// The portal's people: 1 the owner, 5 a new owner, 21 Anna, 22 an extranet user, 23 a
/// moderator-to-be, 24 who asked to join, 25 dismissed, 26 invited earlier, 27 known by name
/// only, 30 an undeclared member.
pub(super) fn people() -> Vec<Person> {
    vec![
        person(1, Some("olga@example.com"), None, true, false),
        person(5, Some("boss@example.com"), None, true, false),
        person(21, Some("anna@example.com"), Some("Anna A"), true, false),
        person(22, Some("ext@partner.org"), None, true, true),
        person(23, Some("mod@example.com"), None, true, false),
        person(24, Some("asker@example.com"), None, true, false),
        person(25, Some("gone@example.com"), None, false, false),
        person(26, Some("invited@example.com"), None, true, false),
        person(27, None, Some("Pavel \u{1b}[31mP"), true, false),
    ]
}

pub(super) fn current() -> CurrentState {
    let mut c = CurrentState::default();
    let mut g = CurrentGroup {
        name: Some("Marketing".to_owned()),
        ..Default::default()
    };
    g.members.insert(UserId::Num(1), Role::Owner);
    g.members.insert(UserId::Num(27), Role::Member);
    g.members.insert(UserId::Num(30), Role::Member);
    g.invited.insert(UserId::Num(26));
    g.requested.insert(UserId::Num(24));
    g.requested.insert(UserId::Num(31));
    c.groups.insert(GroupId::Num(15), g);
    let mut synced = CurrentGroup {
        name: Some("Sales".to_owned()),
        departments: vec![8, 12],
        ..Default::default()
    };
    synced.members.insert(UserId::Num(5), Role::Owner);
    synced.members.insert(UserId::Num(40), Role::Member);
    c.groups.insert(GroupId::Num(16), synced.clone());
    synced.name = Some("Ops".to_owned());
    c.groups.insert(GroupId::Num(17), synced);
    c
}

const FILE: &str = "version: 1
add_with: invite
groups:
  - name: Marketing
    owner: boss@example.com
    moderators: [mod@example.com]
    members: [anna@example.com, ext@partner.org, asker@example.com, gone@example.com, invited@example.com, 27]
  - id: 16
    owner: 5
  - id: 17
    owner: 5
    prune: true
";

pub(super) fn made(options: Options) -> (Plan, Directory, CurrentState) {
    let spec = crate::spec::parse("t.yaml", FILE).unwrap();
    let found = Lookups {
        people: people(),
        groups_by_name: [(
            "Marketing".to_owned(),
            vec![(GroupId::Num(15), "Marketing".to_owned())],
        )]
        .into(),
        caller: None,
        users_unavailable: None,
        emails_unavailable: None,
    };
    let r = crate::resolve::resolve(&spec, &found);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let cur = current();
    (plan::diff_with(&r.desired, &cur, options), r.directory, cur)
}

fn uuid(n: u64) -> Uuid {
    Uuid::parse(&format!("0a0d0000-0000-4000-8000-{n:012}")).unwrap()
}

fn ds_user(n: u64) -> UserId {
    UserId::Uuid(uuid(n))
}

const DESIGNERS: &str = "d5000000-0000-4000-8000-000000000015";

/// A DocSpace group handed from Bo to Cy: Bo (the former manager) and Fay removed, Di added,
/// Ed a guest who is not added.
pub(super) fn docspace() -> (Plan, Directory, CurrentState) {
    let mut dir = Directory {
        system: System::DocSpace,
        ..Directory::default()
    };
    for (n, email, name, extranet) in [
        (10, "bo@example.com", "Bo Brown", false),
        (21, "cy@example.com", "Cy Chen", false),
        (22, "di@example.com", "Di Diaz", false),
        (23, "ed@example.com", "Ed Guest", true),
        (30, "fay@example.com", "Fay Fox", false),
    ] {
        dir.users.insert(
            ds_user(n),
            Person {
                id: ds_user(n),
                email: Some(email.to_owned()),
                name: Some(name.to_owned()),
                active: !extranet,
                extranet,
            },
        );
    }
    let id = GroupId::Uuid(Uuid::parse(DESIGNERS).unwrap());
    let mut cur = CurrentState::default();
    let mut g = CurrentGroup {
        name: Some("Designers".to_owned()),
        ..CurrentGroup::default()
    };
    g.members.insert(ds_user(10), Role::Owner);
    g.members.insert(ds_user(21), Role::Member);
    g.members.insert(ds_user(30), Role::Member);
    cur.groups.insert(id, g);
    let mut want = DesiredGroup::new(id);
    want.name = Some("Designers".to_owned());
    want.owner = Some(ds_user(21));
    want.members.insert(ds_user(22), Role::Member);
    want.inactive.insert(ds_user(23), Role::Member);
    let mut desired = DesiredState::default();
    desired.groups.insert(id, want);
    let p = plan::diff_with(
        &desired,
        &cur,
        Options {
            allow_owner_change: true,
        },
    );
    (p, dir, cur)
}

#[test]
fn people_and_groups_are_shown_by_name() {
    let (p, dir, _) = made(Options {
        allow_owner_change: true,
    });
    insta::assert_snapshot!(text::plan(&p, &dir, Style::default()), @r#"
    roster will make these changes:

      group "Marketing" (#15)
        ~ owner: olga@example.com (#1) → boss@example.com (#5) (olga@example.com (#1) becomes a member)
        - olga@example.com (#1)            member  (the former owner)
        + anna@example.com (#21)           member  (invite)
        + ext@partner.org (#22, extranet)  member  (invite)
        + mod@example.com (#23)            member  (invite; declared moderator: promoted on a later run, once they accept)
        + asker@example.com (#24)          member  (accepting their request to join)
        ! gone@example.com (#25)           inactive: not added
        ! invited@example.com (#26)        invited, pending acceptance
        - #30                              member
        ! #31                              asked to join, waiting for approval (not in the file)

      group "Sales" (#16)
        ! synced by Bitrix24 from departments 8, 12: removals are not planned (set prune: true to take the group over)
        ! #40  member  skipped: synced (not declared; Bitrix24 would add them back from the group's departments)

      group "Ops" (#17)
        ! synced by Bitrix24 from departments 8, 12: prune: true removes members Bitrix24 may add back
        - #40  member

    Plan: 1 to add, 3 to invite, 0 to change, 3 to remove, 1 owner change, 1 skipped, 3 pending.
    "#);
}

#[test]
fn an_owner_mismatch_says_how_to_change_it() {
    let (p, dir, _) = made(Options::default());
    let out = text::plan(&p, &dir, Style::default());
    assert!(
        out.contains("! owner differs: the file declares boss@example.com (#5), the portal has olga@example.com (#1) (pass --allow-owner-change to hand the group over)"),
        "{out}"
    );
    assert!(!out.contains("owner:"), "{out}");
}

#[test]
fn summary_lines_count_what_is_there() {
    let s = |add, invite, owner, skipped, pending| {
        text::summary_line(&plan::Summary {
            add,
            invite,
            change: 0,
            remove: 0,
            owner,
            skipped,
            pending,
        })
    };
    assert_eq!(
        s(1, 0, 0, 0, 0),
        "Plan: 1 to add, 0 to change, 0 to remove, 0 skipped."
    );
    assert_eq!(
        s(0, 2, 2, 1, 0),
        "Plan: 0 to add, 2 to invite, 0 to change, 0 to remove, 2 owner changes, 1 skipped."
    );
    assert_eq!(s(0, 0, 0, 0, 2), "No changes. 0 skipped, 2 pending.");
    assert_eq!(s(0, 0, 0, 1, 0), "No changes. 1 skipped.");
    assert_eq!(s(0, 0, 0, 0, 0), "No changes.");
}

#[test]
fn people_are_shown_by_what_is_known() {
    let mut dir = Directory::default();
    for p in people() {
        dir.users.insert(p.id, p);
    }
    dir.users
        .insert(UserId::Num(50), person(50, None, None, true, true));
    let show = |u| text::person(&dir, UserId::Num(u));
    assert_eq!(show(21), "anna@example.com (#21)");
    assert_eq!(show(22), "ext@partner.org (#22, extranet)");
    assert_eq!(show(27), "Pavel \\u{1b}[31mP (#27)");
    assert_eq!(show(50), "#50 (extranet)");
    assert_eq!(show(99), "#99");
    assert_eq!(
        text::group_title(GroupId::Num(15), Some("M")),
        "group \"M\" (#15)"
    );
    assert_eq!(text::group_title(GroupId::Num(15), None), "group #15");
}

#[test]
fn access_problems_and_the_report_show_people_the_same_way() {
    let (p, dir, cur) = made(Options {
        allow_owner_change: true,
    });
    let problems = plan::access::check(
        &p,
        &cur,
        &Caller {
            user: UserId::Num(99),
            admin: false,
        },
    );
    insta::assert_snapshot!(text::access_problems(&problems, "warning"), @r#"
    warning: group "Marketing" (#15): 3 change(s) not allowed: only a portal administrator may add members, accept requests, change roles or remove members (sonet_group.user.add/update/delete), and the run's user (#99) is not one
    warning: group "Marketing" (#15): 3 change(s) not allowed: inviting (sonet_group.user.invite) needs a portal administrator or a member of the group (the group's invitation setting), and the run's user (#99) is not a member
    warning: group "Marketing" (#15): 1 change(s) not allowed: only the group's current owner may hand it to #5 (sonet_group.setowner; an administrator's webhook is not enough), and the run's user (#99) is not the owner (the owner is #1); run with the owner's webhook or change the owner in Bitrix24
    warning: group "Ops" (#17): 1 change(s) not allowed: only a portal administrator may add members, accept requests, change roles or remove members (sonet_group.user.add/update/delete), and the run's user (#99) is not one
    "#);
    let g = &p.groups[0];
    let outcome = |change: &Change, status| crate::apply::Outcome {
        group: g.id,
        group_name: g.name.clone(),
        change: *change,
        status,
    };
    let changes: Vec<&Change> = g.changes().collect();
    let report = crate::apply::Report {
        outcomes: vec![
            outcome(changes[0], OpStatus::Done),
            outcome(changes[2], OpStatus::Done),
            outcome(
                changes[3],
                OpStatus::NotDone {
                    reason: "not done: already related or not invitable".to_owned(),
                },
            ),
        ],
        ..Default::default()
    };
    insta::assert_snapshot!(text::report(&report, &dir, Style::default()), @r#"
    done        group "Marketing" (#15): ~ owner: olga@example.com (#1) → boss@example.com (#5) (olga@example.com (#1) becomes a member)
    done        group "Marketing" (#15): + anna@example.com (#21) member  (invite)
    not done    group "Marketing" (#15): + ext@partner.org (#22, extranet) member  (invite): not done: already related or not invitable
    Apply: 2 done, 1 not done, 0 failed, 0 skipped.
    "#);
}

#[test]
fn json_carries_people_new_actions_and_the_extras() {
    let (p, dir, cur) = made(Options {
        allow_owner_change: true,
    });
    let spec = crate::spec::parse(
        "t.yaml",
        "version: 1\ngroups:\n  - id: 1\n    members: [x@y]\n",
    )
    .unwrap();
    let errors = crate::resolve::resolve(&spec, &Lookups::default()).errors;
    let problems = plan::access::check(
        &p,
        &cur,
        &Caller {
            user: UserId::Num(5),
            admin: true,
        },
    );
    let out = json::document(
        &p,
        &dir,
        &json::Extras {
            limit_breaches: Some(&[]),
            errors: Some(&errors),
            warnings: Some(&[]),
            access_problems: Some(&problems),
            portal_warnings: None,
        },
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = &v["groups"][0]["entries"];
    insta::assert_snapshot!(serde_json::to_string(&entries).unwrap(), @r#"[{"action":"set_owner","email":"boss@example.com","extranet":false,"from":1,"to":5,"user":5},{"action":"remove","email":"olga@example.com","extranet":false,"role":"member","user":1},{"action":"invite","email":"anna@example.com","extranet":false,"name":"Anna A","role":"member","user":21},{"action":"invite","email":"ext@partner.org","extranet":true,"role":"member","user":22},{"action":"invite","email":"mod@example.com","extranet":false,"role":"moderator","user":23},{"action":"accept","email":"asker@example.com","extranet":false,"role":"member","user":24},{"action":"pending","declared_role":"member","email":"gone@example.com","extranet":false,"kind":"inactive","user":25},{"action":"pending","declared_role":"member","email":"invited@example.com","extranet":false,"kind":"invited","user":26},{"action":"remove","role":"member","user":30},{"action":"pending","declared_role":null,"kind":"requested","user":31}]"#);
    assert_eq!(v["groups"][1]["departments"], serde_json::json!([8, 12]));
    assert_eq!(v["groups"][1]["entries"][0]["reason"], "synced");
    assert_eq!(v["summary"]["invite"], 3);
    assert_eq!(v["summary"]["owner"], 1);
    assert_eq!(v["summary"]["pending"], 3);
    insta::assert_snapshot!(serde_json::to_string_pretty(&serde_json::json!({
        "errors": v["errors"], "warnings": v["warnings"], "access_problems": v["access_problems"], "limit_breaches": v["limit_breaches"]
    })).unwrap(), @r#"
    {
      "access_problems": [
        {
          "changes": 1,
          "group": 15,
          "message": "only the group's current owner may hand it to #5 (sonet_group.setowner; an administrator's webhook is not enough), and the run's user (#5) is not the owner (the owner is #1); run with the owner's webhook or change the owner in Bitrix24",
          "name": "Marketing"
        }
      ],
      "errors": [
        {
          "column": 15,
          "file": "t.yaml",
          "line": 4,
          "message": "no user on the portal has the e-mail address x@y",
          "path": "groups[0].members[0]"
        }
      ],
      "limit_breaches": [],
      "warnings": []
    }
    "#);
    // Without extras, none of those keys is there.
    let plain: serde_json::Value = serde_json::from_str(&json::plan(&p, &dir)).unwrap();
    for key in ["errors", "warnings", "access_problems", "limit_breaches"] {
        assert!(plain.get(key).is_none(), "{key}");
    }
}

#[test]
fn the_json_report_groups_outcomes_and_maps_every_status() {
    let (p, dir, _) = made(Options {
        allow_owner_change: true,
    });
    let statuses = [
        OpStatus::Done,
        OpStatus::Confirmed,
        OpStatus::NotDone {
            reason: "already related".to_owned(),
        },
        OpStatus::Failed {
            error: "sonet_group.user.invite: ERROR_CORE: no".to_owned(),
        },
        OpStatus::Unknown {
            error: "connection reset".to_owned(),
        },
        OpStatus::NotStarted,
    ];
    let outcomes: Vec<crate::apply::Outcome> = crate::apply::changes(&p)
        .into_iter()
        .zip(statuses.iter().cycle())
        .map(|((group, change), status)| crate::apply::Outcome {
            group,
            group_name: p
                .groups
                .iter()
                .find(|g| g.id == group)
                .unwrap()
                .name
                .clone(),
            change,
            status: status.clone(),
        })
        .collect();
    let report = crate::apply::Report {
        outcomes,
        skipped: 1,
        retries: 3,
    };
    insta::assert_snapshot!(json::report_document(&report, &dir), @r#"
    {
      "format_version": "1",
      "kind": "apply_report",
      "summary": {
        "done": 4,
        "not_done": 1,
        "failed": 1,
        "unknown": 1,
        "not_started": 1,
        "skipped": 1
      },
      "all_done": false,
      "retries": 3,
      "groups": [
        {
          "id": 15,
          "name": "Marketing",
          "outcomes": [
            {
              "action": "set_owner",
              "user": 5,
              "from": 1,
              "to": 5,
              "email": "boss@example.com",
              "extranet": false,
              "outcome": "done",
              "confirmed": false,
              "reason": null
            },
            {
              "action": "remove",
              "user": 1,
              "role": "member",
              "email": "olga@example.com",
              "extranet": false,
              "outcome": "done",
              "confirmed": true,
              "reason": null
            },
            {
              "action": "invite",
              "user": 21,
              "role": "member",
              "email": "anna@example.com",
              "name": "Anna A",
              "extranet": false,
              "outcome": "not_done",
              "confirmed": false,
              "reason": "already related"
            },
            {
              "action": "invite",
              "user": 22,
              "role": "member",
              "email": "ext@partner.org",
              "extranet": true,
              "outcome": "failed",
              "confirmed": false,
              "reason": "sonet_group.user.invite: ERROR_CORE: no"
            },
            {
              "action": "invite",
              "user": 23,
              "role": "moderator",
              "email": "mod@example.com",
              "extranet": false,
              "outcome": "unknown",
              "confirmed": false,
              "reason": "connection reset"
            },
            {
              "action": "accept",
              "user": 24,
              "role": "member",
              "email": "asker@example.com",
              "extranet": false,
              "outcome": "not_started",
              "confirmed": false,
              "reason": "not sent: the run was interrupted"
            },
            {
              "action": "remove",
              "user": 30,
              "role": "member",
              "outcome": "done",
              "confirmed": false,
              "reason": null
            }
          ]
        },
        {
          "id": 17,
          "name": "Ops",
          "outcomes": [
            {
              "action": "remove",
              "user": 40,
              "role": "member",
              "outcome": "done",
              "confirmed": true,
              "reason": null
            }
          ]
        }
      ]
    }
    "#);
    let all_done = crate::apply::Report {
        outcomes: report.outcomes[..2].to_vec(),
        ..Default::default()
    };
    let v: serde_json::Value =
        serde_json::from_str(&json::report_document(&all_done, &dir)).unwrap();
    assert_eq!(v["all_done"], true);
    assert_eq!(v["summary"]["done"], 2);
    let none: serde_json::Value = serde_json::from_str(&json::report_document(
        &crate::apply::Report::default(),
        &dir,
    ))
    .unwrap();
    assert_eq!(none["groups"], serde_json::json!([]));
    assert_eq!(none["all_done"], true);
}
