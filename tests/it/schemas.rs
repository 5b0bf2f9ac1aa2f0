//! The JSON Schemas in schemas/ against what roster really prints: `plan --format json` for a
//! plain Bitrix24 file, DocSpace, two portals, and plans with errors and broken limits, and the
//! apply report. Validation is `check-jsonschema` (PyPI), a real draft 2020-12 validator; a
//! document with a wrong action must be rejected, so the check can fail. Without the tool the
//! tests fail under CI (env `CI` set) and are skipped with a message elsewhere.

use std::path::Path;
use std::process::Command;

use roster::apply::{Outcome, Report};
use roster::model::{Directory, GroupId, OpStatus, Person, Role, System, UserId, Uuid};
use roster::plan::Change;

use crate::support::{Workspace, repo};

const CHECKER: &str = "check-jsonschema";

/// Whether `check-jsonschema` runs; when it does not, say why, and fail under CI.
fn checker_available() -> bool {
    let why = match Command::new(CHECKER).arg("--version").output() {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!(
            "`{CHECKER} --version` exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("`{CHECKER}` is not on PATH ({e}); pip install check-jsonschema"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must validate the JSON Schemas");
    }
    eprintln!("skipped: {why}");
    false
}

/// `check-jsonschema --schemafile schemas/SCHEMA` over each document, written to `dir`:
/// (passed, its output).
fn validate(dir: &Path, schema: &str, docs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(CHECKER);
    cmd.arg("--schemafile")
        .arg(repo(&format!("schemas/{schema}")));
    for (name, text) in docs {
        let p = dir.join(format!("{name}.json"));
        std::fs::write(&p, text).unwrap();
        cmd.arg(p);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_valid(ws: &Workspace, schema: &str, docs: &[(&str, &str)]) {
    let (ok, out) = validate(ws.dir.path(), schema, docs);
    assert!(ok, "{schema} rejects roster's own output:\n{out}");
}

/// stdout of `roster ARGS…`, which must exit with `code`.
fn json_of(ws: &Workspace, args: &[&str], code: i32) -> String {
    let run = ws.roster(args);
    assert_eq!(run.code, code, "{}", run.transcript());
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    run.stdout
}

/// The example portals: `portal.yaml` and `crm.yaml` (Bitrix24), `docs.yaml` (DocSpace), and
/// the example files.
fn examples() -> Workspace {
    let ws = Workspace::with_example_portal();
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("crm.yaml")).unwrap();
    std::fs::copy(repo("examples/docspace-sandbox.yaml"), ws.path("docs.yaml")).unwrap();
    for f in ["docspace.yaml", "both.yaml"] {
        std::fs::copy(repo(&format!("examples/{f}")), ws.path(f)).unwrap();
    }
    ws
}

const CRM: &str = "--portal=crm=sandbox:crm.yaml";
const DOCS: &str = "--portal=docs=sandbox:docs.yaml";

#[test]
fn the_plan_schema_accepts_every_kind_of_plan_roster_prints() {
    if !checker_available() {
        return;
    }
    let ws = examples();
    let bitrix = json_of(
        &ws,
        &[
            "plan",
            "groups.yaml",
            "--portal=sandbox:portal.yaml",
            "--format=json",
        ],
        0,
    );
    let docspace = json_of(
        &ws,
        &[
            "plan",
            "docspace.yaml",
            "--portal=sandbox:docs.yaml",
            "--format=json",
        ],
        0,
    );
    let both = json_of(&ws, &["plan", "both.yaml", "--format=json", CRM, DOCS], 0);
    let v: serde_json::Value = serde_json::from_str(&both).unwrap();
    assert_eq!(v["portals"][1]["system"], "docspace", "{both}");
    // A file with errors (an unknown e-mail), a warning, an owner mismatch and a group
    // whose limit breaks: exit 1, and still a valid document.
    ws.write(
        "bad.yaml",
        "version: 1\nlimits: { max_removals: 0 }\ngroups:\n  - name: Marketing\n    members: [nobody@example.com]\n  - id: 27\n    owner: cy@example.com\n    members: []\n",
    );
    let bad = json_of(
        &ws,
        &[
            "plan",
            "bad.yaml",
            "--portal=sandbox:portal.yaml",
            "--format=json",
        ],
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&bad).unwrap();
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{bad}");
    assert!(!v["limit_breaches"].as_array().unwrap().is_empty(), "{bad}");
    // The run-wide limit over two portals: the wrapper's own limit_breaches.
    ws.write(
        "tot.yaml",
        "version: 1\nlimits: { max_total_removals: 2, max_removals: 100%, allow_empty: true }\nportals: { crm: { bitrix24: {} }, docs: { docspace: {} } }\ngroups:\n  - { portal: crm, name: Marketing, members: [bo@example.com] }\n  - { portal: docs, name: Designers, members: [cy@example.com] }\n",
    );
    let total = json_of(&ws, &["plan", "tot.yaml", "--format=json", CRM, DOCS], 1);
    let v: serde_json::Value = serde_json::from_str(&total).unwrap();
    assert_eq!(v["limit_breaches"][0]["scope"], "run", "{total}");
    // A run limited by --group carries its selectors, plain and with portals.
    let scoped = json_of(
        &ws,
        &[
            "plan",
            "groups.yaml",
            "--portal=sandbox:portal.yaml",
            "--format=json",
            "--group=Sales",
        ],
        0,
    );
    let both_scoped = json_of(
        &ws,
        &[
            "plan",
            "both.yaml",
            "--format=json",
            CRM,
            DOCS,
            "--group=crm/Marketing",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&both_scoped).unwrap();
    assert_eq!(v["only_groups"][0], "crm/Marketing", "{both_scoped}");
    assert_valid(
        &ws,
        "plan.schema.json",
        &[
            ("bitrix", &bitrix),
            ("docspace", &docspace),
            ("both", &both),
            ("bad", &bad),
            ("total", &total),
            ("scoped", &scoped),
            ("both_scoped", &both_scoped),
        ],
    );
}

/// `doc` with the value at `pointer` (a JSON pointer into an object) set to `value`, added
/// when the key is not there.
fn with(doc: &str, pointer: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(doc).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(serde_json::Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object in {doc}"))
        .insert(key.to_owned(), value);
    v.to_string()
}

#[test]
fn the_plan_schema_rejects_what_roster_does_not_print() {
    if !checker_available() {
        return;
    }
    let ws = examples();
    let good = json_of(
        &ws,
        &[
            "plan",
            "groups.yaml",
            "--portal=sandbox:portal.yaml",
            "--format=json",
        ],
        0,
    );
    let uuid = serde_json::json!("D5000000-0000-4000-8000-000000000015");
    let bad = [
        (
            "action",
            with(&good, "/groups/0/entries/0/action", "frobnicate".into()),
        ),
        (
            "role",
            with(&good, "/groups/0/entries/0/role", "admin".into()),
        ),
        ("extra", with(&good, "/groups/0/surprise", true.into())),
        ("version", with(&good, "/format_version", "2".into())),
        ("id", with(&good, "/groups/0/id", "15".into())),
        ("uuid", with(&good, "/groups/0/id", uuid)),
    ];
    for (name, doc) in &bad {
        let (ok, out) = validate(ws.dir.path(), "plan.schema.json", &[(name, doc)]);
        assert!(
            !ok,
            "the schema accepts a document with a wrong {name}:\n{out}"
        );
    }
}

fn ds(n: u64) -> Uuid {
    Uuid::parse(&format!("0a0d0000-0000-4000-8000-{n:012}")).unwrap()
}

/// A report with every outcome, for both systems.
fn reports() -> Vec<(&'static str, String)> {
    let mut dir = Directory::default();
    dir.users.insert(
        UserId::Num(21),
        Person {
            id: UserId::Num(21),
            email: Some("cy@example.com".to_owned()),
            name: Some("Cy".to_owned()),
            active: true,
            extranet: false,
        },
    );
    let group = GroupId::Num(15);
    let outcome = |change, status| Outcome {
        group,
        group_name: Some("Marketing".to_owned()),
        change,
        status,
    };
    let (a, b) = (UserId::Num(21), UserId::Num(30));
    let bitrix = Report {
        outcomes: vec![
            outcome(Change::SetOwner { from: None, to: a }, OpStatus::Done),
            outcome(
                Change::Add {
                    user: b,
                    role: Role::Member,
                },
                OpStatus::Confirmed,
            ),
            outcome(
                Change::Invite {
                    user: b,
                    role: Role::Moderator,
                },
                OpStatus::NotDone {
                    reason: "already related".to_owned(),
                },
            ),
            outcome(
                Change::Accept {
                    user: b,
                    role: Role::Member,
                },
                OpStatus::Failed {
                    error: "ERROR_CORE".to_owned(),
                },
            ),
            outcome(
                Change::SetRole {
                    user: a,
                    from: Role::Member,
                    to: Role::Moderator,
                },
                OpStatus::Unknown {
                    error: "connection reset".to_owned(),
                },
            ),
            outcome(
                Change::Remove {
                    user: b,
                    role: Role::Member,
                },
                OpStatus::NotStarted,
            ),
        ],
        skipped: 2,
        retries: 4,
    };
    let docs = Directory {
        system: System::DocSpace,
        ..Directory::default()
    };
    let g = GroupId::Uuid(Uuid::parse("d5000000-0000-4000-8000-000000000015").unwrap());
    let docspace = Report {
        outcomes: vec![
            Outcome {
                group: g,
                group_name: None,
                change: Change::SetOwner {
                    from: Some(UserId::Uuid(ds(10))),
                    to: UserId::Uuid(ds(21)),
                },
                status: OpStatus::Done,
            },
            Outcome {
                group: g,
                group_name: None,
                change: Change::Remove {
                    user: UserId::Uuid(ds(10)),
                    role: Role::Member,
                },
                status: OpStatus::Done,
            },
        ],
        skipped: 0,
        retries: 0,
    };
    vec![
        (
            "bitrix",
            roster::render::json::report_document(&bitrix, &dir),
        ),
        (
            "docspace",
            roster::render::json::report_document(&docspace, &docs),
        ),
        (
            "empty",
            roster::render::json::report_document(&Report::default(), &dir),
        ),
    ]
}

#[test]
fn the_apply_report_schema_accepts_every_outcome_and_rejects_a_wrong_one() {
    if !checker_available() {
        return;
    }
    let ws = examples();
    let docs = reports();
    let named: Vec<(&str, &str)> = docs.iter().map(|(n, d)| (*n, d.as_str())).collect();
    assert_valid(&ws, "apply-report.schema.json", &named);
    let good = &docs[0].1;
    let bad = [
        (
            "outcome",
            with(good, "/groups/0/outcomes/0/outcome", "maybe".into()),
        ),
        (
            "action",
            with(good, "/groups/0/outcomes/0/action", "skip".into()),
        ),
        (
            "extra",
            with(good, "/groups/0/outcomes/0/retries", 1.into()),
        ),
        ("kind", with(good, "/kind", "plan".into())),
    ];
    for (name, doc) in &bad {
        let (ok, out) = validate(ws.dir.path(), "apply-report.schema.json", &[(name, doc)]);
        assert!(
            !ok,
            "the schema accepts a report with a wrong {name}:\n{out}"
        );
    }
    // A plan is not a report, nor a report a plan.
    let plan = json_of(
        &ws,
        &[
            "plan",
            "groups.yaml",
            "--portal=sandbox:portal.yaml",
            "--format=json",
        ],
        0,
    );
    let (ok, _) = validate(
        ws.dir.path(),
        "apply-report.schema.json",
        &[("plan", &plan)],
    );
    assert!(!ok);
    let (ok, _) = validate(ws.dir.path(), "plan.schema.json", &[("report", good)]);
    assert!(!ok);
}

/// The report as `apply --format json` prints it: a plain file's, and the several-portals
/// wrapper of a file with `portals:`.
#[test]
fn the_apply_report_schema_accepts_what_apply_prints() {
    if !checker_available() {
        return;
    }
    let ws = examples();
    let report = json_of(
        &ws,
        &[
            "apply",
            "groups.yaml",
            "--portal=sandbox:portal.yaml",
            "--auto-approve",
            "--format=json",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["kind"], "apply_report", "{report}");
    assert_eq!(v["all_done"], true, "{report}");
    assert_valid(&ws, "apply-report.schema.json", &[("report", &report)]);
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("crm.yaml")).unwrap();
    std::fs::copy(repo("examples/docspace-sandbox.yaml"), ws.path("docs.yaml")).unwrap();
    std::fs::copy(repo("examples/both.yaml"), ws.path("both.yaml")).unwrap();
    let both = json_of(
        &ws,
        &[
            "apply",
            "both.yaml",
            "--portal=crm=sandbox:crm.yaml",
            "--portal=docs=sandbox:docs.yaml",
            "--auto-approve",
            "--format=json",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&both).unwrap();
    assert_eq!(v["portals"][1]["system"], "docspace", "{both}");
    assert_valid(&ws, "apply-report.schema.json", &[("both", &both)]);
}
