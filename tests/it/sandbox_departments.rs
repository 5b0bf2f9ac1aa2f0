//! Conformance of the sandbox's company structure with `/work/shared/reference/bitrix24-rules.md`
//! §1 and §2.5, over real HTTP on 127.0.0.1: `department.get` (filter source, exact keys,
//! `NAME` LIKE, `PARENT`, `GLOBAL_ACTIVE`, tree order, `sort`/`order`, paging with lower-case
//! `start`, item shapes), `department.fields`, the `department` scope, `batch`, `user.get` by
//! `UF_DEPARTMENT`/`ACTIVE`/`USER_TYPE`/`HAS_DEPARTAMENT` with its `UF_DEPARTMENT` output,
//! `UF_SG_DEPT` on groups, and the state file's `departments:`.
//!
//! Each test cites its sources with the reference's tags. Requests are encoded by the
//! conformance module's helpers, which share nothing with roster's client.

use roster::sandbox::bitrix24::{Sandbox, SandboxError};
use serde_json::{Value, json};

use super::sandbox_conformance::{Env, STYLES, Style, assert_err, env};
use super::support::repo;

/// `examples/sandbox-departments.yaml`: the tree is
/// Acme 1 (head 1) → Sales 2 (sort 100, head 10) → Sales EU 4 (head 21), Sales US 5;
/// Acme → Engineering 3 (sort 200, head 22) → Platform 6; Acme → Legacy 7 (inactive) →
/// Legacy Support 8.
fn example() -> String {
    std::fs::read_to_string(repo("examples/sandbox-departments.yaml")).unwrap()
}

async fn portal() -> Env {
    env(&example()).await
}

/// [`example`] with extra `portal:` lines.
async fn portal_with(settings: &str) -> Env {
    let text = example();
    let text = text.replacen(
        "  rate_limit: { burst: 50, per_second: 2 }\n",
        &format!("  rate_limit: null\n{settings}"),
        1,
    );
    env(&text).await
}

const ADMIN: (u32, &str) = (1, "sandboxcode0001");

async fn ok(e: &Env, style: Style, method: &str, p: Value) -> Value {
    let r = e.call_as(ADMIN, style, method, p.clone()).await;
    assert_eq!(r.status, 200, "{method} {style:?} {p}: {}", r.body);
    r.body
}

/// The `ID`s of a result list, as sent (strings).
fn ids(b: &Value) -> Vec<String> {
    b["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result list: {b}"))
        .iter()
        .map(|d| {
            d["ID"]
                .as_str()
                .unwrap_or_else(|| panic!("ID: {d}"))
                .to_owned()
        })
        .collect()
}

async fn dept_ids(e: &Env, style: Style, p: Value) -> Vec<String> {
    ids(&ok(e, style, "department.get", p).await)
}

// ---------------------------------------------------------------------------------------------
// department.get

/// Items: `ID` string, `NAME`, `SORT` int, `PARENT` string, `UF_HEAD` string; the top-level
/// department has no `PARENT` key and a department without a head no `UF_HEAD` key; the
/// default order is `LEFT_MARGIN` (every parent before its children); `total` counts the
/// records, and no `next` on the last page; inactive Legacy and its child never appear
/// (rules §1.1 [src INTR `getDeptData`, `prepareSort`, `prepareDeptData` `GLOBAL_ACTIVE`;
/// sdk PYSDK live test `UF_HEAD == str(owner_id)`; src SRV `setNavData`]).
#[tokio::test]
async fn department_get_items_tree_order_and_envelope() {
    let e = portal().await;
    for style in STYLES {
        let b = ok(&e, style, "department.get", json!({})).await;
        assert_eq!(
            b["result"],
            json!([
                {"ID": "1", "NAME": "Acme", "SORT": 500, "UF_HEAD": "1"},
                {"ID": "2", "NAME": "Sales", "SORT": 100, "PARENT": "1", "UF_HEAD": "10"},
                {"ID": "4", "NAME": "Sales EU", "SORT": 500, "PARENT": "2", "UF_HEAD": "21"},
                {"ID": "5", "NAME": "Sales US", "SORT": 500, "PARENT": "2"},
                {"ID": "3", "NAME": "Engineering", "SORT": 200, "PARENT": "1", "UF_HEAD": "22"},
                {"ID": "6", "NAME": "Platform", "SORT": 500, "PARENT": "3"},
            ]),
            "{style:?}"
        );
        assert_eq!(b["total"], 6);
        assert!(b.get("next").is_none(), "{b}");
        assert!(b["time"].is_object());
    }
}

/// An array `FILTER` replaces the whole query; otherwise the top-level params are the filter
/// (a non-array `FILTER` is just a dropped key) (rules §1.1 "Where the filter comes from"
/// [src INTR `departmentGet`]).
#[tokio::test]
async fn department_get_filter_source() {
    let e = portal().await;
    for style in STYLES {
        let cases = [
            (json!({"FILTER": {"PARENT": 2}}), vec!["4", "5"]),
            (json!({"PARENT": 2}), vec!["4", "5"]),
            // FILTER wins: the top-level PARENT is not read.
            (json!({"FILTER": {"ID": 3}, "PARENT": 2}), vec!["3"]),
            (json!({"FILTER": "x", "ID": 6}), vec!["6"]),
        ];
        for (p, want) in cases {
            assert_eq!(dept_ids(&e, style, p.clone()).await, want, "{style:?} {p}");
        }
    }
}

/// Only the exact keys `ID NAME SORT PARENT UF_HEAD` are copied: operator prefixes, lower
/// case and unknown keys are silently dropped, and `SORT` as a filter is a no-op (rules §1.1
/// "Filter keys are case-sensitive and take no operators" [src INTR `prepareDeptData`];
/// `SORT` [src IBS `GetFilter` has no case; inferred]).
#[tokio::test]
async fn department_get_drops_other_keys() {
    let e = portal().await;
    let all = vec!["1", "2", "4", "5", "3", "6"];
    for style in STYLES {
        for p in [
            json!({"FILTER": {">ID": 4}}),
            json!({"FILTER": {"%NAME": "Sales"}}),
            json!({"FILTER": {"name": "Sales", "id": 2, "parent": 2}}),
            json!({"FILTER": {"=ID": 2, "!PARENT": 1, "ACTIVE": "N"}}),
            json!({"FILTER": {"SORT": 100}}),
            json!({"START": 50}),
        ] {
            assert_eq!(dept_ids(&e, style, p.clone()).await, all, "{style:?} {p}");
        }
    }
}

/// `NAME` is `BS.NAME LIKE '<value>'` with no added `%`: exact unless `%`/`_`, case-insensitive;
/// an array is any of (rules §1.1 `NAME` [src INTR `prepareDeptData` → IBS `GetFilter` → IB
/// `FilterCreateEx`; inferred collation]; doc "The full name of the department should be
/// specified").
#[tokio::test]
async fn department_get_name_is_like() {
    let e = portal().await;
    for style in STYLES {
        let cases = [
            (json!({"NAME": "Sales"}), vec!["2"]),
            (json!({"NAME": "sALES"}), vec!["2"]),
            (json!({"NAME": "Sal"}), vec![]),
            (json!({"NAME": "Sales%"}), vec!["2", "4", "5"]),
            (json!({"NAME": "Sales _U"}), vec!["4"]),
            (json!({"NAME": "%a%"}), vec!["1", "2", "4", "5", "6"]),
            (json!({"NAME": "Legacy"}), vec![]),
        ];
        for (p, want) in cases {
            let got = dept_ids(&e, style, p.clone()).await;
            assert_eq!(got, want, "{style:?} {p}");
        }
    }
    // Arrays only travel as JSON here.
    assert_eq!(
        dept_ids(
            &e,
            Style::Json,
            json!({"FILTER": {"NAME": ["platform", "Acme"]}})
        )
        .await,
        ["1", "6"]
    );
}

/// `ID`, `PARENT`, `UF_HEAD` take an int or an int array (`IN`); `PARENT` ≤ 0 is the top
/// level; `PARENT` means direct children only; whatever lies in or below an inactive
/// department is never returned (rules §1.1 per-key semantics, "Always added"
/// [src INTR `prepareDeptData`; src IBS `GetFilter` `SECTION_ID`, `GLOBAL_ACTIVE`]).
#[tokio::test]
async fn department_get_id_parent_head_and_global_active() {
    let e = portal().await;
    for style in STYLES {
        let cases = [
            (json!({"PARENT": 0}), vec!["1"]),
            (json!({"PARENT": -1}), vec!["1"]),
            (json!({"PARENT": "0"}), vec!["1"]),
            (json!({"PARENT": 1}), vec!["2", "3"]),
            (json!({"PARENT": "2"}), vec!["4", "5"]),
            (json!({"PARENT": [2, 3]}), vec!["4", "5", "6"]),
            (json!({"PARENT": 7}), vec![]),
            (json!({"ID": 3}), vec!["3"]),
            (json!({"ID": "5"}), vec!["5"]),
            (json!({"ID": [6, 2, 99]}), vec!["2", "6"]),
            (json!({"ID": [7, 8]}), vec![]),
            (json!({"UF_HEAD": 10}), vec!["2"]),
            (json!({"UF_HEAD": [22, 21]}), vec!["4", "3"]),
            (json!({"UF_HEAD": 40}), vec![]),
            (json!({"PARENT": 2, "UF_HEAD": 21}), vec!["4"]),
        ];
        for (p, want) in cases {
            let got = dept_ids(&e, style, p.clone()).await;
            assert_eq!(got, want, "{style:?} {p}");
        }
    }
}

/// `sort`/`order` keys are case-insensitive, the `sort` value one of the five fields (any
/// case), `order` `DESC` or anything else → `ASC`; a bad `sort` keeps the tree order; with a
/// `FILTER` array they are read inside it, not at the top level (rules §1.1 "Sorting"
/// [src INTR `prepareSort`; inferred]).
#[tokio::test]
async fn department_get_sort_and_order() {
    let e = portal().await;
    let tree = vec!["1", "2", "4", "5", "3", "6"];
    for style in STYLES {
        let cases = [
            (json!({"sort": "NAME"}), vec!["1", "3", "6", "2", "4", "5"]),
            (
                json!({"SORT": "name", "ORDER": "desc"}),
                vec!["5", "4", "2", "6", "3", "1"],
            ),
            (
                json!({"Sort": "ID", "order": "DESC"}),
                vec!["6", "5", "4", "3", "2", "1"],
            ),
            (
                json!({"sort": "ID", "order": "up"}),
                vec!["1", "2", "3", "4", "5", "6"],
            ),
            (json!({"sort": "SORT"}), vec!["2", "3", "1", "4", "5", "6"]),
            (
                json!({"sort": "LEFT_MARGIN", "order": "DESC"}),
                tree.clone(),
            ),
            (
                json!({"FILTER": {"PARENT": 2, "sort": "NAME", "order": "DESC"}}),
                vec!["5", "4"],
            ),
            (
                json!({"FILTER": {"PARENT": 1}, "sort": "ID", "order": "DESC"}),
                vec!["2", "3"],
            ),
        ];
        for (p, want) in cases {
            let got = dept_ids(&e, style, p.clone()).await;
            assert_eq!(got, want, "{style:?} {p}");
        }
    }
    // A non-string `sort` (a JSON number) is not a sort.
    assert_eq!(dept_ids(&e, Style::Json, json!({"sort": 1})).await, tree);
}

/// 50 per page, page = `floor(start/50)+1`, `next` = `page*50` while pages remain, `total`
/// the record count; only lower-case `start` pages, `START` is ignored; `start=-1` gives the
/// first 50 without `next` (rules §1.1 "Paging" [src SRV `CRestServer::processCall`,
/// `IRestService::getNavData/setNavData`; inferred]; PYSDK's `START` never pages).
#[tokio::test]
async fn department_get_pages_with_lower_case_start() {
    let mut text = example();
    let mut extra = String::new();
    for i in 100..220 {
        extra.push_str(&format!("  - {{ id: {i}, name: D{i}, parent: 6 }}\n"));
    }
    text = text.replacen("groups:\n", &format!("{extra}groups:\n"), 1);
    let e = env(&text).await;
    for style in STYLES {
        let page = |b: &Value| b["result"].as_array().unwrap().len();
        let b = ok(&e, style, "department.get", json!({"PARENT": 6})).await;
        assert_eq!(
            (page(&b), &b["total"], &b["next"]),
            (50, &json!(120), &json!(50))
        );
        assert_eq!(b["result"][0]["ID"], "100");
        let b = ok(
            &e,
            style,
            "department.get",
            json!({"PARENT": 6, "start": 50}),
        )
        .await;
        assert_eq!((page(&b), &b["next"]), (50, &json!(100)));
        assert_eq!(b["result"][0]["ID"], "150");
        // Mid-page offsets land on their page's start.
        let b = ok(
            &e,
            style,
            "department.get",
            json!({"PARENT": 6, "start": 120}),
        )
        .await;
        assert_eq!(page(&b), 20);
        assert_eq!(b["result"][0]["ID"], "200");
        assert!(b.get("next").is_none(), "{b}");
        let b = ok(
            &e,
            style,
            "department.get",
            json!({"PARENT": 6, "start": 10}),
        )
        .await;
        assert_eq!(b["result"][0]["ID"], "100");
        // Upper-case START: neither paging nor a filter.
        let b = ok(
            &e,
            style,
            "department.get",
            json!({"PARENT": 6, "START": 50}),
        )
        .await;
        assert_eq!(
            (&b["result"][0]["ID"], &b["next"]),
            (&json!("100"), &json!(50))
        );
        let b = ok(
            &e,
            style,
            "department.get",
            json!({"PARENT": 6, "start": -1}),
        )
        .await;
        assert_eq!(page(&b), 50);
        assert!(b.get("next").is_none(), "{b}");
        // The whole tree: 6 + 120, the new ones under Platform (6) in name order.
        let b = ok(&e, style, "department.get", json!({"start": 100})).await;
        assert_eq!((&b["total"], page(&b)), (&json!(126), 26));
    }
}

/// `department.fields`: the flat map of the five fields' labels, whatever the parameters
/// (rules §1.2 [src INTR `departmentFields`; doc DOCS-EN `department-fields.md` example]).
#[tokio::test]
async fn department_fields_lists_the_five_fields() {
    let e = portal().await;
    for style in STYLES {
        let b = ok(&e, style, "department.fields", json!({"FILTER": {"ID": 1}})).await;
        assert_eq!(
            b["result"],
            json!({"ID": "ID", "NAME": "Department Name", "SORT": "Sorting Order",
                   "PARENT": "Parent Department", "UF_HEAD": "Manager"})
        );
        assert!(b.get("total").is_none());
    }
}

/// `department.*` needs the `department` scope: a webhook without it gets
/// `insufficient_scope` (empty description inside a batch), one with only it may not call
/// `user.get` (rules §1.1 "Scope", §1.7 [src INTR `OnRestServiceBuildDescription` key
/// `department`]; reference §3 "scope is checked per sub-call", §5).
#[tokio::test]
async fn department_methods_need_the_department_scope() {
    let e = portal().await;
    let text = "The request requires higher privileges than provided by the webhook token";
    for style in STYLES {
        for method in ["department.get", "department.fields"] {
            let r = e
                .call_as((1, "nodeptcode0001"), style, method, json!({}))
                .await;
            assert_err(&r, 401, "insufficient_scope", text);
            let r = e
                .call_as((1, "deptonlycode01"), style, method, json!({}))
                .await;
            assert_eq!(r.status, 200, "{method}: {}", r.body);
        }
        let r = e
            .call_as((1, "deptonlycode01"), style, "user.get", json!({}))
            .await;
        assert_err(&r, 401, "insufficient_scope", text);
    }
    let r = e
        .call_as(
            (1, "nodeptcode0001"),
            Style::Json,
            "batch",
            json!({"cmd": {"d": "department.get", "u": "user.current"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["result"]["result_error"],
        json!({"d": {"error": "insufficient_scope", "error_description": ""}})
    );
    assert_eq!(r.body["result"]["result"]["u"]["ID"], "1");
}

/// Inside `batch`, `department.get` works like a plain call: a `start` in the command's
/// query pages that sub-call (`result_total`, `result_next`), `parse_str` arrays reach the
/// filter, and references to earlier results resolve (reference §3 [src PROV, UTIL
/// `processBatchElement`]; rules §1.3 "walk level by level with `PARENT: [ids…]`").
#[tokio::test]
async fn department_get_inside_batch() {
    let e = portal().await;
    let r = e
        .call_as(
            ADMIN,
            Style::Json,
            "batch",
            json!({"halt": 1, "cmd": {
                "top": "department.get?PARENT=0",
                "kids": "department.get?PARENT=$result[top][0][ID]&sort=ID",
                "grand": "department.get?FILTER[PARENT][0]=2&FILTER[PARENT][1]=3",
                "paged": "department.get?start=5",
                "fields": "department.fields",
            }}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = &r.body["result"];
    assert_eq!(res["result_error"], json!([]), "{res}");
    let sub_ids = |k: &str| -> Vec<String> { ids(&json!({"result": res["result"][k]})) };
    assert_eq!(sub_ids("top"), ["1"]);
    assert_eq!(sub_ids("kids"), ["2", "3"]);
    assert_eq!(sub_ids("grand"), ["4", "5", "6"]);
    // start=5 is on page 1 (floor(5/50)+1).
    assert_eq!(sub_ids("paged").len(), 6);
    assert_eq!(res["result_total"]["top"], 1);
    assert_eq!(res["result_total"]["grand"], 3);
    assert_eq!(res["result"]["fields"]["UF_HEAD"], "Manager");
}

// ---------------------------------------------------------------------------------------------
// user.get by department, activity and type

fn user_ids(b: &Value) -> Vec<String> {
    ids(b)
}

async fn users(e: &Env, style: Style, p: Value) -> Vec<String> {
    user_ids(&ok(e, style, "user.get", p).await)
}

/// `UF_DEPARTMENT` comes as a JSON array of ints, `ACTIVE` as a bool, `USER_TYPE` as a string,
/// next to every field `user.get` gave before; a user without departments has no
/// `UF_DEPARTMENT` key by default (rules §1.5 "Output" [src USR `getUserData`; sdk PYSDK live
/// test `UF_DEPARTMENT == [HEAD_DEPARTMENT_ID]`, `ACTIVE is True`; doc example
/// `"UF_DEPARTMENT":[1]`]; the empty state is UNCONFIRMED, rules §8.1).
#[tokio::test]
async fn user_get_outputs_uf_department() {
    let e = portal().await;
    for style in STYLES {
        let b = ok(&e, style, "user.get", json!({"FILTER": {"@ID": [30, 31]}})).await;
        assert_eq!(
            b["result"],
            json!([
                {"ID": "30", "ACTIVE": true, "NAME": "Fay", "LAST_NAME": "Finn",
                 "EMAIL": "fay@example.com", "UF_DEPARTMENT": [4, 5], "USER_TYPE": "employee"},
                {"ID": "31", "ACTIVE": true, "NAME": "Gus", "LAST_NAME": "Gray",
                 "EMAIL": "gus@partner.example", "USER_TYPE": "extranet"},
            ]),
            "{style:?}"
        );
        let b = ok(&e, style, "user.current", json!({})).await;
        assert_eq!(b["result"]["UF_DEPARTMENT"], json!([1]));
    }
}

/// `portal.user_no_department` picks the UNCONFIRMED state of an empty `UF_DEPARTMENT`:
/// `absent` (default), `null`, `empty` (`[]`) or `false`, which a client must all accept
/// (rules §1.5 "Output", §8.1 [src IUT `postInitialize` has both NULL and the serialized empty
/// array; inferred]).
#[tokio::test]
async fn user_no_department_switch() {
    for (setting, want) in [
        ("null", json!(null)),
        ("empty", json!([])),
        ("false", json!(false)),
    ] {
        let e = portal_with(&format!("  user_no_department: {setting}\n")).await;
        let b = ok(&e, Style::Json, "user.get", json!({"ID": 31})).await;
        let u = b["result"][0].as_object().unwrap();
        assert_eq!(u.get("UF_DEPARTMENT"), Some(&want), "{setting}");
        let b = ok(&e, Style::Json, "user.get", json!({"ID": 10})).await;
        assert_eq!(b["result"][0]["UF_DEPARTMENT"], json!([2]));
        // Written back as given.
        assert!(e.text().contains(&format!("user_no_department: {setting}")));
    }
}

/// `UF_DEPARTMENT` filter = "has any of": a scalar is wrapped into an array, a list matches
/// any element of the multi-valued field, and there is no recursion into sub-departments;
/// inactive users are found too unless `ACTIVE` is filtered; the legacy top-level filter of
/// the docs' cURL example works as well (rules §1.5 `UF_DEPARTMENT` [src USR
/// `prepareUserValue`, `prepareUserFilter`; inferred]; reference §2.1 "Legacy quirk").
#[tokio::test]
async fn user_get_by_uf_department() {
    let e = portal().await;
    for style in STYLES {
        let cases = [
            (json!({"FILTER": {"UF_DEPARTMENT": 2}}), vec!["10", "50"]),
            (json!({"FILTER": {"UF_DEPARTMENT": "4"}}), vec!["21", "30"]),
            (
                json!({"FILTER": {"UF_DEPARTMENT": [5, 6]}}),
                vec!["23", "30"],
            ),
            (json!({"FILTER": {"UF_DEPARTMENT": 1}}), vec!["1"]),
            (json!({"FILTER": {"=UF_DEPARTMENT": [3]}}), vec!["22"]),
            (json!({"FILTER": {"@UF_DEPARTMENT": [8]}}), vec!["40"]),
            (
                json!({"FILTER": {"UF_DEPARTMENT": [2, 4], "ACTIVE": true}}),
                vec!["10", "21", "30"],
            ),
            (json!({"FILTER": {"UF_DEPARTMENT": 99}}), vec![]),
            (json!({"UF_DEPARTMENT": 2}), vec!["10", "50"]),
            (json!({"uf_department": [6]}), vec!["23"]),
        ];
        for (p, want) in cases {
            let got = users(&e, style, p.clone()).await;
            assert_eq!(got, want, "{style:?} {p}");
        }
    }
}

/// `ACTIVE` is normalised by `($value && $value !== 'N') ? 'Y' : 'N'`: `true`, `"Y"`, `1` and
/// the string `"false"` mean active; `false`, `0`, `"0"`, `""` and `"N"` inactive (rules §1.5
/// `ACTIVE` [src USR `prepareUserFilter`, `prepareUserValue`; inferred]).
#[tokio::test]
async fn user_get_active_normalisation() {
    let e = portal().await;
    let active = vec!["1", "10", "21", "22", "23", "30", "31", "40"];
    let inactive = vec!["50"];
    let cases = [
        (json!(true), &active),
        (json!("Y"), &active),
        (json!("false"), &active),
        (json!(1), &active),
        (json!(false), &inactive),
        (json!(0), &inactive),
        (json!("0"), &inactive),
        (json!(""), &inactive),
        (json!("N"), &inactive),
    ];
    for (v, want) in cases {
        let got = users(&e, Style::Json, json!({"FILTER": {"ACTIVE": v}})).await;
        assert_eq!(&got, want, "ACTIVE {v}");
    }
    // Form and query encoding carry strings: the same rule.
    for style in [Style::Form, Style::Get] {
        for (v, want) in [
            ("Y", &active),
            ("false", &active),
            ("N", &inactive),
            ("0", &inactive),
        ] {
            let got = users(&e, style, json!({"FILTER": {"ACTIVE": v}})).await;
            assert_eq!(&got, want, "{style:?} ACTIVE {v}");
        }
    }
}

/// `USER_TYPE` (forced `=`): `employee` or `extranet`; `email` returns nothing, since
/// `user.get` adds `REAL_USER` and e-mail users are an external type; `HAS_DEPARTAMENT: "Y"`
/// (sic) keeps users with a non-empty `UF_DEPARTMENT` (rules §1.5 `USER_TYPE`,
/// `HAS_DEPARTAMENT` [src IUT `postInitialize`; src MUT `getExternalUserTypes`; src USR]).
#[tokio::test]
async fn user_get_user_type_and_has_departament() {
    let e = portal().await;
    for style in STYLES {
        let cases = [
            (json!({"FILTER": {"USER_TYPE": "extranet"}}), vec!["31"]),
            (
                json!({"FILTER": {"USER_TYPE": "employee", "ACTIVE": true}}),
                vec!["1", "10", "21", "22", "23", "30", "40"],
            ),
            (json!({"FILTER": {"USER_TYPE": "email"}}), vec![]),
            (
                json!({"FILTER": {"HAS_DEPARTAMENT": "Y"}}),
                vec!["1", "10", "21", "22", "23", "30", "40", "50"],
            ),
            (
                json!({"FILTER": {"HAS_DEPARTAMENT": "N"}}),
                vec!["1", "10", "21", "22", "23", "30", "31", "40", "50"],
            ),
            (
                json!({"FILTER": {"UF_DEPARTMENT": [4, 5], "USER_TYPE": "employee", "ACTIVE": "Y"}}),
                vec!["21", "30"],
            ),
        ];
        for (p, want) in cases {
            let got = users(&e, style, p.clone()).await;
            assert_eq!(got, want, "{style:?} {p}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UF_SG_DEPT on groups

/// `UF_SG_DEPT` is read through `socialnetwork.api.workgroup.get` `select: ["DEPARTMENTS"]`
/// (ids as JSON ints); `sonet_group.get` returns no `UF_*` field (rules §2.5 "Reading it"
/// [doc DOCS-EN `socialnetwork-api-workgroup-get.md`]; §2.3 "Fields" [src GRP/SONET2]).
#[tokio::test]
async fn uf_sg_dept_is_exposed_as_departments_only() {
    let e = portal().await;
    for style in STYLES {
        let b = ok(
            &e,
            style,
            "socialnetwork.api.workgroup.get",
            json!({"params": {"groupId": 15, "select": ["DEPARTMENTS"]}}),
        )
        .await;
        assert_eq!(b["result"]["DEPARTMENTS"], json!([2]), "{style:?}");
        let b = ok(
            &e,
            style,
            "socialnetwork.api.workgroup.get",
            json!({"params": {"groupId": 15}}),
        )
        .await;
        assert!(b["result"].get("DEPARTMENTS").is_none(), "{b}");
        let b = ok(&e, style, "sonet_group.get", json!({"IS_ADMIN": "Y"})).await;
        let g = b["result"][0].as_object().unwrap();
        assert!(
            !g.keys().any(|k| k.starts_with("UF_")),
            "sonet_group.get returned a user field: {g:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The state file

/// The departments survive the sandbox's own write-back (a change rewrites the file) and a
/// restart, and the example loads unchanged.
#[tokio::test]
async fn departments_persist_through_a_write_and_a_restart() {
    let mut e = portal().await;
    let before = ok(&e, Style::Json, "department.get", json!({})).await["result"].clone();
    let r = e
        .call_as(
            ADMIN,
            Style::Json,
            "sonet_group.user.add",
            json!({"GROUP_ID": 15, "USER_ID": 22}),
        )
        .await;
    assert_eq!(r.body["result"], json!(["22"]));
    let text = e.text();
    assert!(
        text.contains(
            "departments:\n  - { id: 1, name: Acme, head: 1 }\n  - { id: 2, name: Sales, parent: 1, head: 10, sort: 100 }\n"
        ),
        "{text}"
    );
    assert!(text.contains("  - { id: 7, name: Legacy, parent: 1, active: false }\n"));
    assert!(text.contains(
        "  - { id: 30, email: fay@example.com, name: Fay, last_name: Finn, active: true, departments: [4, 5] }\n"
    ));
    e.restart().await;
    let after = ok(&e, Style::Json, "department.get", json!({})).await["result"].clone();
    assert_eq!(before, after);
    let b = ok(
        &e,
        Style::Json,
        "user.get",
        json!({"FILTER": {"UF_DEPARTMENT": 4}}),
    )
    .await;
    assert_eq!(user_ids(&b), ["21", "30"]);
}

async fn start_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.yaml");
    std::fs::write(&path, text).unwrap();
    match Sandbox::start(&path, "127.0.0.1:0".parse().unwrap()).await {
        Ok(_) => panic!("started with {text}"),
        Err(e @ SandboxError::Invalid { .. }) => {
            e.to_string().replace(&path.display().to_string(), "F")
        }
        Err(e) => panic!("not a validation error: {e}"),
    }
}

/// Dangling parents and heads, cycles, unknown departments of users and extranet users with
/// departments are refused at start, naming the line and column of the offending value.
#[tokio::test]
async fn invalid_departments_name_the_line() {
    let base = example();
    // (edit, the text just before the offending value, the message)
    let cases = [
        (
            ("name: Platform, parent: 3", "name: Platform, parent: 9"),
            "name: Platform, parent: ",
            "department 6: parent department 9 does not exist",
        ),
        (
            (
                "name: Sales US, parent: 2",
                "name: Sales US, parent: 2, head: 77",
            ),
            "name: Sales US, parent: 2, head: ",
            "department 5: head user 77 does not exist",
        ),
        (
            (
                "{ id: 1, name: Acme, head: 1 }",
                "{ id: 1, name: Acme, head: 1, parent: 4 }",
            ),
            "name: Acme, head: 1, parent: ",
            "department 1: its parents make a cycle (1 → 4 → 2 → 1)",
        ),
        (
            (
                "last_name: Eng, active: true, departments: [6]",
                "last_name: Eng, active: true, departments: [6, 12]",
            ),
            "last_name: Eng, active: true, departments: [6, ",
            "user 23: department 12 does not exist",
        ),
        (
            ("extranet: true }", "extranet: true, departments: [2] }"),
            "extranet: true, departments: ",
            "user 31: an extranet user has no departments",
        ),
        (
            (
                "{ id: 8, name: Legacy Support",
                "{ id: 7, name: Legacy Support",
            ),
            "{ id: ",
            "duplicate department id 7",
        ),
        (
            ("{ id: 5, name: Sales US", "{ id: 5, name: \"  \""),
            "{ id: 5, name: ",
            "department 5 has an empty name",
        ),
    ];
    for ((from, to), before, message) in cases {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "{from}");
        let (n, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(to))
            .unwrap();
        let column = line.find(before).unwrap() + before.len() + 1;
        let want = format!("invalid state file F:{}:{column}: {message}", n + 1);
        assert_eq!(start_error(&text).await, want);
    }
}
