//! Conformance of the DocSpace sandbox with `/work/shared/reference/docspace-api.md`, over real
//! HTTP on 127.0.0.1: every endpoint's success shape and documented errors (status codes,
//! envelope keys, omitted nulls, empty bodies), paging, the manager rules, authentication and
//! scopes, roles, persistence, state-file validation, the rate limiter and injected faults.
//!
//! Each test names its source with the reference's tags: SRV (server code), TST (the server's
//! tests), APIT (the API test suite), DOC (official docs), SMP (samples), RRL (the rate-limit
//! library). Time-dependent tests drive a `ManualClock` or a gate clock whose sleeps wait
//! for the test, never for real time.
//!
//! The requests here are written for the tests and share nothing with roster's client.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use roster::sandbox::bitrix24::limits::{Clock, ManualClock, Sleep};
use roster::sandbox::docspace::{
    RouteStats, STATS_PATH, Sandbox, SandboxError, StartOptions, Stats, is_docspace_state,
};
use serde_json::{Value, json};

pub(crate) const ADA: &str = "6e7b3c1a-0000-4000-8000-000000000001"; // owner
pub(crate) const AL: &str = "6e7b3c1a-0000-4000-8000-000000000002"; // admin
pub(crate) const RAY: &str = "6e7b3c1a-0000-4000-8000-000000000003"; // room admin
pub(crate) const UMA: &str = "6e7b3c1a-0000-4000-8000-000000000004"; // user
pub(crate) const GUS: &str = "6e7b3c1a-0000-4000-8000-000000000005"; // guest
pub(crate) const TED: &str = "6e7b3c1a-0000-4000-8000-000000000006"; // terminated
pub(crate) const PAM: &str = "6e7b3c1a-0000-4000-8000-000000000007"; // pending
pub(crate) const NOBODY: &str = "6e7b3c1a-0000-4000-8000-0000000000ff";

pub(crate) const DESIGNERS: &str = "6e7b3c1a-0000-4000-8000-0000000000a1";
pub(crate) const SALES: &str = "6e7b3c1a-0000-4000-8000-0000000000a2";
pub(crate) const WEB: &str = "6e7b3c1a-0000-4000-8000-0000000000a3";
pub(crate) const SUPPORT: &str = "6e7b3c1a-0000-4000-8000-0000000000a4";
pub(crate) const NO_GROUP: &str = "6e7b3c1a-0000-4000-8000-0000000000af";

pub(crate) const ADMIN_KEY: &str =
    "sk-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const READ_KEY: &str = "sk-1111111111111111111111111111111111111111111111111111111111111111";
const SELF_KEY: &str = "sk-2222222222222222222222222222222222222222222222222222222222222222";
const ROOMS_KEY: &str = "sk-3333333333333333333333333333333333333333333333333333333333333333";
const UMA_KEY: &str = "sk-4444444444444444444444444444444444444444444444444444444444444444";

/// The test portal. Designers: manager Uma, members Uma, Ada and the terminated Ted.
pub(crate) fn portal() -> String {
    format!(
        r#"# test portal
docspace:
  users:
    - {{ id: {ADA}, email: ada@example.com, first_name: Ada, last_name: Admin, status: active, type: owner }}
    - {{ id: {AL}, email: al@example.com, first_name: Al, last_name: Lee, status: active, type: admin }}
    - {{ id: {RAY}, email: ray@example.com, first_name: Ray, last_name: Room, status: active, type: room_admin }}
    - {{ id: {UMA}, email: uma@example.com, first_name: Uma, last_name: User, user_name: uma.u, status: active, type: user }}
    - {{ id: {GUS}, email: gus@example.com, first_name: Gus, last_name: Guest, status: active, type: guest }}
    - {{ id: {TED}, email: ted@example.com, first_name: Ted, last_name: Gone, status: terminated, type: user }}
    - {{ id: {PAM}, email: pam@example.com, first_name: Pam, last_name: Invited, status: pending, type: user }}
  groups:
    - id: {DESIGNERS}
      name: Designers
      manager: {UMA}
      members:
        - {UMA}
        - {ADA}
        - {TED}
    - id: {SALES}
      name: Sales
      members:
        - {RAY}
    - id: {WEB}
      name: Web design
      members: []
    - id: {SUPPORT}
      name: Support
      manager: {AL}
      members:
        - {AL}
        - {UMA}
        - {RAY}
  api_keys:
    - {{ user: {UMA}, key: {UMA_KEY}, scopes: ["rooms:read"] }}
    - {{ user: {ADA}, key: {ADMIN_KEY} }}
    - {{ user: {ADA}, key: {READ_KEY}, scopes: ["accounts:read"] }}
    - {{ user: {ADA}, key: {SELF_KEY}, scopes: ["accounts.self:read"] }}
    - {{ user: {RAY}, key: {ROOMS_KEY}, scopes: ["rooms:read"] }}
  tokens:
    - {{ user: {ADA}, token: pat-ada }}
    - {{ user: {RAY}, token: pat-ray }}
    - {{ user: {UMA}, token: pat-uma }}
    - {{ user: {GUS}, token: pat-gus }}
    - {{ user: {TED}, token: pat-ted }}
"#
    )
}

pub(crate) struct Env {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) sb: Sandbox,
    pub(crate) http: reqwest::Client,
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{e}: status {} body {:?}", self.status, self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    /// `response` of a 200 envelope.
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        let v = self.json();
        assert_eq!(v["status"], 0, "{v}");
        assert_eq!(v["statusCode"], 200, "{v}");
        v["response"].clone()
    }
}

pub(crate) async fn env_with(yaml: &str, options: StartOptions) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docspace.yaml");
    std::fs::write(&path, yaml).unwrap();
    let sb = Sandbox::start_with(&path, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    Env {
        _dir: dir,
        path,
        sb,
        http: crate::support::http(),
    }
}

pub(crate) async fn env(yaml: &str) -> Env {
    env_with(yaml, StartOptions::default()).await
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum As<'a> {
    /// `Authorization: Bearer KEY-OR-TOKEN`.
    Bearer(&'a str),
    /// `Authorization: VALUE` as given.
    Raw(&'a str),
    /// The `asc_auth_key` cookie.
    Cookie(&'a str),
    Nobody,
}

const OWNER: As<'static> = As::Bearer(ADMIN_KEY);

impl Env {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sb.base_url())
    }

    pub(crate) fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }

    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub(crate) async fn call(
        &self,
        who: As<'_>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, self.url(path));
        req = match who {
            As::Bearer(k) => req.header("Authorization", format!("Bearer {k}")),
            As::Raw(v) => req.header("Authorization", v),
            As::Cookie(t) => req.header("Cookie", format!("other=1; asc_auth_key={t}")),
            As::Nobody => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(OWNER, "GET", path, None).await
    }

    /// Group `id` as the file holds it: (manager, members).
    pub(crate) fn group(&self, id: &str) -> Option<(Option<String>, Vec<String>)> {
        let v: serde_norway::Value = serde_norway::from_str(&self.text()).unwrap();
        let g = v["docspace"]["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|g| g["id"].as_str() == Some(id))?;
        let members = g["members"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        Some((g["manager"].as_str().map(str::to_owned), members))
    }

    async fn served_stats(&self) -> Stats {
        let r = self.send(self.http.get(self.url(STATS_PATH))).await;
        assert_eq!(r.status, 200);
        serde_json::from_str(&r.text).unwrap()
    }
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect()
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect()
}

/// Assert an exception envelope (reference §4) with this status and message.
#[track_caller]
fn assert_error(r: &Reply, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(keys(&v), ["error", "status", "statusCode"], "{v}");
    assert_eq!(v["status"], 1);
    assert_eq!(v["statusCode"], status);
    assert_eq!(v["error"]["message"], message, "{v}");
    assert_eq!(
        keys(&v["error"]),
        ["hresult", "message", "stack", "type"],
        "{v}"
    );
    assert!(v["error"]["hresult"].is_i64());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

/// Assert a 400 validation problem in the success wrapper (reference §4) with these keys.
#[track_caller]
fn assert_invalid(r: &Reply, error_keys: &[&str]) {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(
        keys(&v),
        ["count", "links", "response", "status", "statusCode"],
        "{v}"
    );
    assert_eq!(v["status"], 1);
    assert_eq!(v["statusCode"], 400);
    assert_eq!(
        keys(&v["response"]),
        ["errors", "status", "title", "type"],
        "{v}"
    );
    assert_eq!(v["response"]["status"], 400);
    assert_eq!(
        v["response"]["title"],
        "One or more validation errors occurred."
    );
    assert_eq!(keys(&v["response"]["errors"]), error_keys, "{v}");
}

/// Assert an answer with this status and no body at all.
#[track_caller]
fn assert_empty(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.text, "", "status {status} must have an empty body");
    // A 204 carries no Content-Length at all (RFC 9110 §8.6); others say 0.
    let want = (status != 204).then_some("0");
    assert_eq!(r.header("content-length"), want);
    assert_eq!(r.header("content-type"), None);
}

const EMPLOYEE_KEYS: &[&str] = &[
    "activationStatus",
    "avatar",
    "avatarMax",
    "avatarMedium",
    "avatarOriginal",
    "avatarSmall",
    "displayName",
    "email",
    "firstName",
    "groups",
    "hasAvatar",
    "id",
    "isAdmin",
    "isAnonim",
    "isCollaborator",
    "isLDAP",
    "isOwner",
    "isRoomAdmin",
    "isSSO",
    "isVisitor",
    "lastName",
    "profileUrl",
    "registrationDate",
    "status",
    "userName",
];

fn employee_keys_without_groups() -> Vec<&'static str> {
    EMPLOYEE_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "groups")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// GET group: the list

// SRV GroupsController.GetGroups (groupFullDtoHelper.Get(g, false)), GroupDto.cs; reference
// §1.2 (null properties omitted) and §4 (envelope, links).
#[tokio::test]
async fn list_groups_envelope_and_shape() {
    let e = env(&portal()).await;
    let r = e.get("/api/2.0/group").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let v = r.json();
    assert_eq!(
        keys(&v),
        [
            "count",
            "links",
            "response",
            "status",
            "statusCode",
            "total"
        ]
    );
    assert_eq!(v["count"], 4);
    assert_eq!(v["total"], 4);
    assert_eq!(
        v["links"],
        json!([{"href": e.url("/api/2.0/group"), "action": "GET"}])
    );
    let list = &v["response"];
    assert_eq!(names(list), ["Designers", "Sales", "Support", "Web design"]);
    // Lists never carry members; a group without a manager has no `manager` key.
    let sales = &list[1];
    assert_eq!(
        keys(sales),
        ["category", "id", "isLDAP", "membersCount", "name", "parent"]
    );
    assert_eq!(sales["parent"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(sales["category"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(sales["isLDAP"], false);
    assert_eq!(sales["membersCount"], 1);
    let designers = &list[0];
    assert_eq!(
        keys(designers),
        [
            "category",
            "id",
            "isLDAP",
            "manager",
            "membersCount",
            "name",
            "parent"
        ]
    );
    assert_eq!(designers["manager"]["id"], UMA);
    // The terminated member drops out of the count (reference §6, default status filter).
    assert_eq!(designers["membersCount"], 2);
    // The query string is part of the link.
    let r = e.get("/api/2.0/group?count=2&filterValue=a").await;
    assert_eq!(
        r.json()["links"][0]["href"],
        e.url("/api/2.0/group?count=2&filterValue=a")
    );
}

// SRV GetGroups: SetCount(min(max(total-offset,0),count)).SetTotalCount(total); APIT
// "startIndex greater than total" gives [].
#[tokio::test]
async fn list_groups_paging() {
    let e = env(&portal()).await;
    let page = |q: &'static str| {
        let e = &e;
        async move {
            let v = e.get(&format!("/api/2.0/group?{q}")).await.json();
            (
                names(&v["response"])
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
                v["count"].as_u64().unwrap(),
                v["total"].as_u64().unwrap(),
            )
        }
    };
    assert_eq!(
        page("count=2").await,
        (vec!["Designers".into(), "Sales".into()], 2, 4)
    );
    assert_eq!(
        page("count=2&startIndex=2").await,
        (vec!["Support".into(), "Web design".into()], 2, 4)
    );
    assert_eq!(
        page("count=2&startIndex=3").await,
        (vec!["Web design".into()], 1, 4)
    );
    assert_eq!(page("startIndex=4").await, (vec![], 0, 4));
    assert_eq!(page("startIndex=99&count=100").await, (vec![], 0, 4));
    // Query names bind case-insensitively.
    assert_eq!(
        page("COUNT=1&StartIndex=1").await,
        (vec!["Sales".into()], 1, 4)
    );
}

// SRV GeneralInformationRequestDto: `count` is [Range(1,100)], default 100; a bad value is a
// model-validation 400 in the success wrapper (reference §1.1, §4).
#[tokio::test]
async fn list_groups_count_out_of_range_is_400() {
    let e = env(&portal()).await;
    for q in ["count=0", "count=101", "count=-1", "count=abc"] {
        let r = e.get(&format!("/api/2.0/group?{q}")).await;
        assert_invalid(&r, &["count"]);
        assert_eq!(
            r.json()["links"][0]["href"],
            e.url(&format!("/api/2.0/group?{q}"))
        );
    }
    let r = e.get("/api/2.0/group?count=0").await;
    assert_eq!(
        r.json()["response"]["errors"]["count"],
        json!(["The field count must be between 1 and 100."])
    );
    assert_eq!(e.get("/api/2.0/group?count=100").await.json()["count"], 4);
    assert_eq!(e.get("/api/2.0/group?count=1").await.json()["count"], 1);
}

// SRV DbUserService BuildTextSearch (trimmed, case-insensitive substring) and
// BuildUserGroupSearch (userId, manager); APIT list-by-manager; TST
// GroupPermissionGetGroupsListTests (unknown userId → [], bad format → 400); SMP
// list-groups-managed-by-user (`manager=True`).
#[tokio::test]
async fn list_groups_filters() {
    let e = env(&portal()).await;
    let list = |q: String| {
        let e = &e;
        async move { e.get(&format!("/api/2.0/group?{q}")).await }
    };
    let r = list("filterValue=%20%20DESIGN%20".into()).await;
    assert_eq!(names(&r.ok()), ["Designers", "Web design"]);
    assert_eq!(r.json()["total"], 2);
    assert_eq!(names(&list("filterValue=".into()).await.ok()).len(), 4);
    assert_eq!(
        names(&list(format!("userId={UMA}")).await.ok()),
        ["Designers", "Support"]
    );
    assert_eq!(
        names(&list(format!("userId={UMA}&manager=true")).await.ok()),
        ["Designers"]
    );
    assert_eq!(
        names(
            &list(format!("manager=True&userId={}", AL.to_uppercase()))
                .await
                .ok()
        ),
        ["Support"]
    );
    // `manager` alone is ignored; an unknown user has no groups.
    assert_eq!(names(&list("manager=true".into()).await.ok()).len(), 4);
    let r = list(format!("userId={NOBODY}")).await;
    assert_eq!(r.ok(), json!([]));
    assert_eq!(r.json()["total"], 0);
    assert_invalid(&list("userId=abc".into()).await, &["userId"]);
    assert_invalid(&list("manager=yes".into()).await, &["manager"]);
}

// SRV GroupSortType (title default, manager = manager's first name, membersCount;
// case-insensitive; unknown → title); TST "InvalidSortBy_Ignored", sortOrder=99 → 400; APIT
// uses sortBy=Name.
#[tokio::test]
async fn list_groups_sorting() {
    let e = env(&portal()).await;
    let order = |q: &'static str| {
        let e = &e;
        async move {
            let r = e.get(&format!("/api/2.0/group?{q}")).await;
            names(&r.ok())
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        }
    };
    let by_title = ["Designers", "Sales", "Support", "Web design"];
    assert_eq!(order("").await, by_title);
    assert_eq!(order("sortBy=Name").await, by_title);
    assert_eq!(order("sortBy=nonsense&sortOrder=0").await, by_title);
    let mut reversed = by_title.to_vec();
    reversed.reverse();
    assert_eq!(order("sortOrder=1").await, reversed);
    assert_eq!(order("sortOrder=descending").await, reversed);
    // Members counted as shown: Web 0, Sales 1, Designers 2 (Ted hidden), Support 3.
    assert_eq!(
        order("sortBy=MembersCount").await,
        ["Web design", "Sales", "Designers", "Support"]
    );
    // No manager first, then Al (Support), Uma (Designers).
    assert_eq!(
        order("sortBy=manager").await,
        ["Sales", "Web design", "Support", "Designers"]
    );
    assert_invalid(&e.get("/api/2.0/group?sortOrder=99").await, &["sortOrder"]);
}

// ---------------------------------------------------------------------------------------------
// GET group/{id}

// SRV GetGroup (includeMembers defaults to true; TST GroupReadTests), GroupDto.cs,
// EmployeeFullDto.cs (enums as numbers); reference §1.2.
#[tokio::test]
async fn get_group_with_members_by_default() {
    let e = env(&portal()).await;
    let r = e.get(&format!("/api/2.0/group/{DESIGNERS}")).await;
    let v = r.json();
    assert_eq!(
        keys(&v),
        ["count", "links", "response", "status", "statusCode"],
        "a single object has no total"
    );
    assert_eq!(v["count"], 1);
    let g = r.ok();
    assert_eq!(
        keys(&g),
        [
            "category",
            "id",
            "isLDAP",
            "manager",
            "members",
            "membersCount",
            "name",
            "parent"
        ]
    );
    assert_eq!(g["id"], DESIGNERS);
    assert_eq!(g["name"], "Designers");
    assert_eq!(
        ids(&g["members"]),
        [UMA, ADA],
        "Ted is terminated: not listed"
    );
    assert_eq!(g["membersCount"], 2);
    let uma = &g["members"][0];
    assert_eq!(keys(uma), EMPLOYEE_KEYS);
    assert_eq!(uma, &g["manager"]);
    assert_eq!(uma["displayName"], "Uma User");
    assert_eq!(uma["firstName"], "Uma");
    assert_eq!(uma["lastName"], "User");
    assert_eq!(uma["userName"], "uma.u");
    assert_eq!(uma["email"], "uma@example.com");
    assert_eq!(uma["status"], 1);
    assert_eq!(uma["activationStatus"], 1);
    assert_eq!(
        (
            uma["isAdmin"].clone(),
            uma["isOwner"].clone(),
            uma["isRoomAdmin"].clone()
        ),
        (json!(false), json!(false), json!(false))
    );
    assert_eq!(uma["isVisitor"], false);
    assert_eq!(uma["isCollaborator"], true);
    assert_eq!(
        uma["groups"],
        json!([
            {"id": DESIGNERS, "name": "Designers", "manager": "uma.u"},
            {"id": SUPPORT, "name": "Support", "manager": "al"},
        ])
    );
    let ada = &g["members"][1];
    assert_eq!(
        (ada["isOwner"].clone(), ada["isAdmin"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(ada["userName"], "ada", "default: the e-mail's local part");
    // includeMembers=false keeps the count and the manager, drops the list.
    let g = e
        .get(&format!("/api/2.0/group/{DESIGNERS}?includeMembers=false"))
        .await
        .ok();
    assert_eq!(g.get("members"), None);
    assert_eq!(g["membersCount"], 2);
    assert_eq!(g["manager"]["id"], UMA);
    let g = e
        .get(&format!("/api/2.0/group/{WEB}?includeMembers=True"))
        .await
        .ok();
    assert_eq!(g["members"], json!([]));
    assert_eq!(g.get("manager"), None, "no manager: the key is omitted");
    assert_invalid(
        &e.get(&format!("/api/2.0/group/{WEB}?includeMembers=1"))
            .await,
        &["includeMembers"],
    );
    // A member without groups has no `groups` key.
    let pam = e.get(&format!("/api/2.0/people/{PAM}")).await.ok();
    assert_eq!(keys(&pam), employee_keys_without_groups());
    assert_eq!(
        (pam["status"].clone(), pam["activationStatus"].clone()),
        (json!(4), json!(2))
    );
}

// The `terminated_members: show` setting lists them (reference §6 UNCONFIRMED).
#[tokio::test]
async fn terminated_members_can_be_shown() {
    let yaml = portal().replace("docspace:\n", "docspace:\n  terminated_members: show\n");
    let e = env(&yaml).await;
    let g = e.get(&format!("/api/2.0/group/{DESIGNERS}")).await.ok();
    assert_eq!(ids(&g["members"]), [UMA, ADA, TED]);
    assert_eq!(g["membersCount"], 3);
    assert_eq!(g["members"][2]["status"], 2);
}

// SRV GetGroupInfoAsync → ItemNotFoundException "The group could not be found" (TST); the
// `{id:guid}` route constraint → 404 with no body for a non-UUID (TST
// GroupPermissionGetGroupTests "InvalidIdFormat_NotFound"); reference §4 exception envelope.
#[tokio::test]
async fn get_group_unknown_and_malformed_ids() {
    let e = env(&portal()).await;
    let r = e.get(&format!("/api/2.0/group/{NO_GROUP}")).await;
    assert_error(&r, 404, "The group could not be found");
    assert_eq!(
        r.json()["error"]["type"],
        "ASC.Common.Web.ItemNotFoundException"
    );
    for id in ["abc", "10001", "6e7b3c1a-0000-4000-8000-00000000000"] {
        assert_empty(&e.get(&format!("/api/2.0/group/{id}")).await, 404);
    }
    // Guid.TryParse: upper case, no hyphens and braces all match the route.
    for id in [
        DESIGNERS.to_uppercase(),
        DESIGNERS.replace('-', ""),
        format!("%7B{DESIGNERS}%7D"),
    ] {
        let g = e.get(&format!("/api/2.0/group/{id}")).await.ok();
        assert_eq!(g["id"], DESIGNERS, "{id}");
    }
}

// SRV GetByUserIdAsync (`user/{userid:guid}`), GroupSummaryDto.cs (manager = userName).
#[tokio::test]
async fn groups_of_a_user_are_summaries() {
    let e = env(&portal()).await;
    let r = e.get(&format!("/api/2.0/group/user/{RAY}")).await;
    assert_eq!(r.json()["count"], 2);
    assert_eq!(
        r.ok(),
        json!([
            {"id": SALES, "name": "Sales"},
            {"id": SUPPORT, "name": "Support", "manager": "al"},
        ])
    );
    let r = e.get(&format!("/api/2.0/group/user/{NOBODY}")).await;
    assert_eq!(r.ok(), json!([]));
    assert_empty(&e.get("/api/2.0/group/user/ray").await, 404);
}

// ---------------------------------------------------------------------------------------------
// POST group, PUT group/{id}, DELETE group/{id}

// SRV AddGroupAsync (200, full GroupDto with members; manager transferred first); APIT expects
// 200 not 201; TST GroupManagerTests (members [] with a manager → membersCount 1); TST dedup;
// reference §1.3 (validation before creation, 400 "The user could not be found").
#[tokio::test]
async fn create_group() {
    let e = env(&portal()).await;
    let body = json!({"groupName": "Ops", "groupManager": AL, "members": [RAY, RAY, UMA]});
    let r = e.call(OWNER, "POST", "/api/2.0/group", Some(body)).await;
    let g = r.ok();
    assert_eq!(r.json()["count"], 1);
    assert_eq!(
        r.json()["links"],
        json!([{"href": e.url("/api/2.0/group"), "action": "POST"}])
    );
    let id = g["id"].as_str().unwrap().to_owned();
    assert!(
        roster::sandbox::docspace::state::is_canonical_uuid(&id),
        "{id}"
    );
    assert_eq!(g["name"], "Ops");
    assert_eq!(g["manager"]["id"], AL);
    assert_eq!(ids(&g["members"]), [AL, RAY, UMA]);
    assert_eq!(g["membersCount"], 3);
    assert_eq!(
        e.group(&id),
        Some((Some(AL.into()), vec![AL.into(), RAY.into(), UMA.into()]))
    );
    // The new group is listed and readable.
    let got = e.get(&format!("/api/2.0/group/{id}")).await.ok();
    assert_eq!(got, g);
    // A manager and no members: the manager is the one member.
    let r = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": "Solo", "groupManager": UMA, "members": []})),
        )
        .await;
    let g = r.ok();
    assert_eq!(
        (g["membersCount"].clone(), ids(&g["members"])),
        (json!(1), vec![UMA])
    );
    // Only a name: no manager key, no members.
    let g = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": "Bare"})),
        )
        .await
        .ok();
    assert_eq!(g.get("manager"), None);
    assert_eq!(g["members"], json!([]));
    // The empty GUID as manager means none.
    let g = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(
                json!({"groupName": "Nil", "groupManager": "00000000-0000-0000-0000-000000000000"}),
            ),
        )
        .await
        .ok();
    assert_eq!(g.get("manager"), None);
}

// Reference §1.3: every listed user (the manager included) must exist, not be terminated and
// not be a guest, else 400 "The user could not be found" and nothing is created; groupName
// required, ≤ 128 characters ([Required], [StringLength]: validation 400), not whitespace
// (ArgumentException: 400 envelope).
#[tokio::test]
async fn create_group_refusals_create_nothing() {
    let e = env(&portal()).await;
    let before = e.text();
    for body in [
        json!({"groupName": "X", "members": [NOBODY]}),
        json!({"groupName": "X", "members": [UMA, GUS]}),
        json!({"groupName": "X", "members": [TED]}),
        json!({"groupName": "X", "groupManager": GUS}),
        json!({"groupName": "X", "groupManager": NOBODY, "members": [UMA]}),
    ] {
        let r = e
            .call(OWNER, "POST", "/api/2.0/group", Some(body.clone()))
            .await;
        assert_error(&r, 400, "The user could not be found");
        assert_eq!(
            r.json()["error"]["type"],
            "System.ArgumentException",
            "{body}"
        );
    }
    for (body, key) in [
        (json!({}), "GroupName"),
        (json!({"groupName": ""}), "GroupName"),
        (json!({"groupName": null}), "GroupName"),
        (json!({"groupName": "x".repeat(129)}), "GroupName"),
        (json!({"groupName": 5}), "$.groupName"),
        (
            json!({"groupName": "X", "members": ["abc"]}),
            "$.members[0]",
        ),
        (json!({"groupName": "X", "members": UMA}), "$.members"),
        (
            json!({"groupName": "X", "groupManager": "10001"}),
            "$.groupManager",
        ),
    ] {
        let r = e
            .call(OWNER, "POST", "/api/2.0/group", Some(body.clone()))
            .await;
        assert_invalid(&r, &[key]);
    }
    let r = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": "  \t "})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "System.ArgumentException");
    assert_eq!(e.text(), before, "nothing was written");
    // 128 characters are fine.
    let name = "é".repeat(128);
    let g = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": name})),
        )
        .await
        .ok();
    assert_eq!(g["name"], name);
}

// SRV UpdateGroupAsync: rename, then manager (skipped when absent, empty GUID or invalid),
// then add, then remove; invalid users skipped silently; `{}` → 200 unchanged (APIT); the
// answer is the group with members.
#[tokio::test]
async fn update_group() {
    let e = env(&portal()).await;
    let before = e.text();
    let path = format!("/api/2.0/group/{SALES}");
    let r = e.call(OWNER, "PUT", &path, Some(json!({}))).await;
    assert_eq!(ids(&r.ok()["members"]), [RAY]);
    assert_eq!(e.text(), before, "{{}} changes nothing");
    let body = json!({
        "groupName": "Sales EU",
        "groupManager": UMA,
        "membersToAdd": [AL, GUS, NOBODY, TED, AL],
        "membersToRemove": [RAY, NOBODY],
    });
    let g = e.call(OWNER, "PUT", &path, Some(body)).await.ok();
    assert_eq!(g["name"], "Sales EU");
    assert_eq!(g["manager"]["id"], UMA);
    assert_eq!(ids(&g["members"]), [UMA, AL]);
    assert_eq!(
        e.group(SALES),
        Some((Some(UMA.into()), vec![UMA.into(), AL.into()]))
    );
    // Removing the manager in the same update leaves no manager (reference §6).
    let body = json!({"groupManager": AL, "membersToRemove": [AL]});
    let g = e.call(OWNER, "PUT", &path, Some(body)).await.ok();
    assert_eq!(g.get("manager"), None);
    assert_eq!(ids(&g["members"]), [UMA]);
    // An empty GUID or a guest as manager is ignored; the old manager stays.
    let path = format!("/api/2.0/group/{DESIGNERS}");
    for m in ["00000000-0000-0000-0000-000000000000", GUS, TED, NOBODY] {
        let g = e
            .call(OWNER, "PUT", &path, Some(json!({"groupManager": m})))
            .await
            .ok();
        assert_eq!(g["manager"]["id"], UMA, "{m}");
    }
    let r = e
        .call(
            OWNER,
            "PUT",
            &format!("/api/2.0/group/{NO_GROUP}"),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 404, "The group could not be found");
    assert_invalid(
        &e.call(OWNER, "PUT", &path, Some(json!({"membersToAdd": ["x"]})))
            .await,
        &["$.membersToAdd[0]"],
    );
    assert_invalid(
        &e.call(
            OWNER,
            "PUT",
            &path,
            Some(json!({"groupName": "y".repeat(129)})),
        )
        .await,
        &["GroupName"],
    );
    assert_eq!(
        e.call(OWNER, "PUT", &path, Some(json!({"groupName": " "})))
            .await
            .status,
        400
    );
}

// SRV DeleteGroupAsync returns NoContent(); APIT expect(status).toBe(204); DOC's 200 wrapper is
// wrong (reference §1).
#[tokio::test]
async fn delete_group_is_204_without_body() {
    let e = env(&portal()).await;
    let path = format!("/api/2.0/group/{SUPPORT}");
    let r = e.call(OWNER, "DELETE", &path, None).await;
    assert_empty(&r, 204);
    assert_eq!(r.header("content-type"), None);
    assert_eq!(e.group(SUPPORT), None);
    assert_error(&e.get(&path).await, 404, "The group could not be found");
    assert_error(
        &e.call(OWNER, "DELETE", &path, None).await,
        404,
        "The group could not be found",
    );
    // The users are still there and in their other groups.
    assert_eq!(e.get(&format!("/api/2.0/people/{AL}")).await.status, 200);
    assert_eq!(e.group(DESIGNERS).unwrap().1, [UMA, ADA, TED]);
}

// ---------------------------------------------------------------------------------------------
// Members: PUT (add), POST (replace), DELETE (remove)

// SRV AddMembersToAsync + TransferUserToDepartmentAsync (unknown, terminated, guest skipped:
// TST "NonExistingUserInMembers_SilentlyIgnored"); APIT adding twice is idempotent; TST
// `members: []`/null → 200 unchanged (Bug 81484).
#[tokio::test]
async fn add_members() {
    let e = env(&portal()).await;
    let path = format!("/api/2.0/group/{SALES}/members");
    let body = json!({"members": [UMA, NOBODY, GUS, TED, UMA, PAM, RAY]});
    let r = e.call(OWNER, "PUT", &path, Some(body)).await;
    let g = r.ok();
    assert_eq!(ids(&g["members"]), [RAY, UMA, PAM]);
    assert_eq!(g["membersCount"], 3);
    assert_eq!(e.group(SALES).unwrap().1, [RAY, UMA, PAM]);
    let before = e.text();
    for body in [
        json!({"members": [UMA]}),
        json!({"members": []}),
        json!({"members": null}),
        json!({}),
    ] {
        let r = e.call(OWNER, "PUT", &path, Some(body.clone())).await;
        assert_eq!(ids(&r.ok()["members"]), [RAY, UMA, PAM], "{body}");
    }
    assert_eq!(e.text(), before);
    assert_error(
        &e.call(
            OWNER,
            "PUT",
            &format!("/api/2.0/group/{NO_GROUP}/members"),
            Some(json!({"members": [UMA]})),
        )
        .await,
        404,
        "The group could not be found",
    );
}

// SRV SetMembersToAsync: with no valid user, 400 "Members" and the group untouched (the older
// APIT Bug 79368 build emptied it instead); else every current member is removed, then the
// valid ones added (reference §1.4).
#[tokio::test]
async fn replace_members() {
    let e = env(&portal()).await;
    let path = format!("/api/2.0/group/{DESIGNERS}/members");
    let before = e.text();
    for body in [
        json!({"members": [GUS, NOBODY, TED]}),
        json!({"members": []}),
        json!({}),
    ] {
        let r = e.call(OWNER, "POST", &path, Some(body.clone())).await;
        assert_error(&r, 400, "Members");
        assert_eq!(r.json()["error"]["type"], "System.ArgumentException");
    }
    assert_eq!(e.text(), before, "untouched");
    let r = e
        .call(
            OWNER,
            "POST",
            &path,
            Some(json!({"members": [RAY, GUS, UMA, RAY]})),
        )
        .await;
    let g = r.ok();
    // Uma was the manager: removed with everyone, then added back as a plain member.
    assert_eq!(g.get("manager"), None);
    assert_eq!(ids(&g["members"]), [RAY, UMA]);
    // The hidden terminated member is not among those removed (GetUsersByGroupAsync).
    assert_eq!(
        e.group(DESIGNERS),
        Some((None, vec![TED.into(), RAY.into(), UMA.into()]))
    );
}

// SRV RemoveMembersFromAsync + RemoveUserFromDepartmentAsync; reference §6: non-members,
// unknown ids, duplicates, `[]` and `{}` are silent no-ops with 200 (TST
// GroupPermissionRemoveMembersTests "NonMemberUser_NoOp", "NonExistingUserInMembers_
// SilentlyIgnored", "DuplicateUserIds_Idempotent"; GroupMembersRemoveTests
// "SameMemberTwice_IsIdempotent"); invalid UUID strings fail binding, group unchanged.
#[tokio::test]
async fn remove_members_noops() {
    let e = env(&portal()).await;
    let path = format!("/api/2.0/group/{SUPPORT}/members");
    let before = e.text();
    for body in [
        json!({"members": [ADA]}),
        json!({"members": [NOBODY, "00000000-0000-0000-0000-000000000000"]}),
        json!({"members": []}),
        json!({"members": null}),
        json!({}),
    ] {
        let r = e.call(OWNER, "DELETE", &path, Some(body.clone())).await;
        let g = r.ok();
        assert_eq!(ids(&g["members"]), [AL, UMA, RAY], "{body}");
        assert_eq!(g["manager"]["id"], AL);
    }
    assert_eq!(e.text(), before, "the file was not rewritten");
    for body in [
        json!({"members": ["not-a-uuid"]}),
        json!({"members": [UMA, 7]}),
        json!({"members": [DESIGNERS.replace('-', "")]}),
    ] {
        let r = e.call(OWNER, "DELETE", &path, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["status"], 1);
    }
    assert_eq!(e.text(), before);
    // Duplicates: removed once.
    let r = e
        .call(OWNER, "DELETE", &path, Some(json!({"members": [UMA, UMA]})))
        .await;
    assert_eq!(ids(&r.ok()["members"]), [AL, RAY]);
    // Removed from this group only, still a user of the portal.
    assert_eq!(e.group(DESIGNERS).unwrap().1, [UMA, ADA, TED]);
    assert_eq!(e.get(&format!("/api/2.0/people/{UMA}")).await.status, 200);
}

// Reference §6 (SRV UserManager.RemoveUserFromGroupAsync deletes the Manager reference): removing
// the manager through DELETE /members leaves the group with NO manager; the key is omitted.
#[tokio::test]
async fn removing_the_manager_leaves_no_manager() {
    let e = env(&portal()).await;
    let path = format!("/api/2.0/group/{DESIGNERS}/members");
    let r = e
        .call(OWNER, "DELETE", &path, Some(json!({"members": [UMA]})))
        .await;
    let g = r.ok();
    assert_eq!(g.get("manager"), None, "{g}");
    assert_eq!(ids(&g["members"]), [ADA]);
    assert_eq!(
        e.group(DESIGNERS),
        Some((None, vec![ADA.into(), TED.into()]))
    );
    assert!(
        !e.text()
            .contains(&format!("manager: {UMA}\n      members:\n        - {ADA}")),
        "{}",
        e.text()
    );
    let g = e.get(&format!("/api/2.0/group/{DESIGNERS}")).await.ok();
    assert_eq!(g.get("manager"), None);
    let listed = e.get("/api/2.0/group?filterValue=designers").await.ok();
    assert_eq!(listed[0].get("manager"), None);
    // Adding the user back makes them a member, not the manager again.
    let g = e
        .call(OWNER, "PUT", &path, Some(json!({"members": [UMA]})))
        .await
        .ok();
    assert_eq!(g.get("manager"), None);
    assert_eq!(ids(&g["members"]), [ADA, UMA]);
}

// SRV SetManagerAsync; TST GroupPermissionSetManagerTests (userId missing, null or "" → 400),
// GroupManagerTests (a non-member becomes manager and member; the old manager stays a member);
// reference §1.4 (unknown → 404 "The user could not be found"; guest or terminated → 200,
// unchanged).
#[tokio::test]
async fn set_manager() {
    let e = env(&portal()).await;
    let path = format!("/api/2.0/group/{DESIGNERS}/manager");
    for (body, key) in [
        (json!({}), "userId"),
        (json!({"userId": null}), "userId"),
        (json!({"userId": ""}), "$.userId"),
        (json!({"userId": "abc"}), "$.userId"),
    ] {
        assert_invalid(&e.call(OWNER, "PUT", &path, Some(body)).await, &[key]);
    }
    for m in [NOBODY, "00000000-0000-0000-0000-000000000000"] {
        let r = e
            .call(OWNER, "PUT", &path, Some(json!({"userId": m})))
            .await;
        assert_error(&r, 404, "The user could not be found");
    }
    let before = e.text();
    for m in [GUS, TED] {
        let g = e
            .call(OWNER, "PUT", &path, Some(json!({"userId": m})))
            .await
            .ok();
        assert_eq!(g["manager"]["id"], UMA, "{m}");
    }
    assert_eq!(e.text(), before);
    let r = e
        .call(OWNER, "PUT", &path, Some(json!({"userId": RAY})))
        .await;
    let g = r.ok();
    assert_eq!(g["manager"]["id"], RAY);
    assert_eq!(ids(&g["members"]), [UMA, ADA, RAY]);
    assert_eq!(
        e.group(DESIGNERS),
        Some((
            Some(RAY.into()),
            vec![UMA.into(), ADA.into(), TED.into(), RAY.into()]
        ))
    );
    // Setting the current manager again changes nothing.
    let before = e.text();
    e.call(OWNER, "PUT", &path, Some(json!({"userId": RAY})))
        .await
        .ok();
    assert_eq!(e.text(), before);
    assert_error(
        &e.call(
            OWNER,
            "PUT",
            &format!("/api/2.0/group/{NO_GROUP}/manager"),
            Some(json!({"userId": RAY})),
        )
        .await,
        404,
        "The group could not be found",
    );
}

// SRV TransferMembersToAsync and reference §1.4: all members go to `toId` (guests and
// terminated users skipped) and leave `fromId`, whose manager loses the role; the answer is the
// `toId` group; either id unknown → 404.
#[tokio::test]
async fn move_members() {
    let yaml = portal().replace(
        &format!("      members:\n        - {AL}\n        - {UMA}\n        - {RAY}\n"),
        &format!(
            "      members:\n        - {AL}\n        - {UMA}\n        - {RAY}\n        - {GUS}\n"
        ),
    );
    let e = env(&yaml).await;
    for (from, to) in [(NO_GROUP, SALES), (SUPPORT, NO_GROUP)] {
        let r = e
            .call(
                OWNER,
                "PUT",
                &format!("/api/2.0/group/{from}/members/{to}"),
                None,
            )
            .await;
        assert_error(&r, 404, "The group could not be found");
    }
    let r = e
        .call(
            OWNER,
            "PUT",
            &format!("/api/2.0/group/{SUPPORT}/members/{SALES}"),
            None,
        )
        .await;
    let g = r.ok();
    assert_eq!(g["id"], SALES);
    assert_eq!(ids(&g["members"]), [RAY, AL, UMA]);
    assert_eq!(
        g.get("manager"),
        None,
        "the target's manager is unchanged (none)"
    );
    assert_eq!(e.group(SUPPORT), Some((None, vec![])), "the guest left too");
    assert_eq!(e.group(SALES).unwrap().1, [RAY, AL, UMA]);
    assert_eq!(
        e.call(
            OWNER,
            "PUT",
            &format!("/api/2.0/group/{SUPPORT}/members/abc"),
            None
        )
        .await
        .status,
        404
    );
}

// ---------------------------------------------------------------------------------------------
// People

// SRV UserController.GetProfileByEmail, MemberRequestDto; TST GetProfileByEmailTests (status and
// message text): e-mail trimmed, 404 "The user could not be found", blank → 400, a User or
// Guest looking up someone else → 403 "Access denied".
#[tokio::test]
async fn people_by_email() {
    let e = env(&portal()).await;
    let p = e
        .get("/api/2.0/people/email?email=%20Ada%40Example.COM%20")
        .await
        .ok();
    assert_eq!(keys(&p), EMPLOYEE_KEYS);
    assert_eq!(p["id"], ADA);
    assert_eq!(p["email"], "ada@example.com");
    let p = e
        .get("/api/2.0/people/email?email=ted@example.com")
        .await
        .ok();
    assert_eq!(p["status"], 2, "terminated users are still found");
    assert_error(
        &e.get("/api/2.0/people/email?email=nobody@example.com")
            .await,
        404,
        "The user could not be found",
    );
    for q in ["", "?email=", "?email=%20%20"] {
        assert_invalid(
            &e.get(&format!("/api/2.0/people/email{q}")).await,
            &["email"],
        );
    }
    let uma = As::Raw("pat-uma");
    let r = e
        .call(
            uma,
            "GET",
            "/api/2.0/people/email?email=ada@example.com",
            None,
        )
        .await;
    assert_error(&r, 403, "Access denied");
    assert_eq!(
        r.json()["error"]["type"],
        "System.Security.SecurityException"
    );
    let me = e
        .call(
            uma,
            "GET",
            "/api/2.0/people/email?email=UMA@example.com",
            None,
        )
        .await
        .ok();
    assert_eq!(me["id"], UMA);
    let r = e
        .call(
            As::Raw("pat-gus"),
            "GET",
            "/api/2.0/people/email?email=uma@example.com",
            None,
        )
        .await;
    assert_error(&r, 403, "Access denied");
    let r = e
        .call(
            As::Raw("pat-ray"),
            "GET",
            "/api/2.0/people/email?email=uma@example.com",
            None,
        )
        .await;
    assert_eq!(r.ok()["id"], UMA, "a room admin may look people up");
}

// SRV GetProfileByUserId: a UUID or a userName; DOC authentication pages: people/@self.
#[tokio::test]
async fn people_by_id_user_name_and_self() {
    let e = env(&portal()).await;
    for id in [
        UMA.to_owned(),
        UMA.to_uppercase(),
        "uma.u".into(),
        "UMA.U".into(),
    ] {
        let p = e.get(&format!("/api/2.0/people/{id}")).await.ok();
        assert_eq!(p["id"], UMA, "{id}");
    }
    assert_eq!(e.get("/api/2.0/people/al").await.ok()["id"], AL);
    for id in [NOBODY, "nobody"] {
        assert_error(
            &e.get(&format!("/api/2.0/people/{id}")).await,
            404,
            "The user could not be found",
        );
    }
    let me = e.get("/api/2.0/people/@self").await.ok();
    assert_eq!(me["id"], ADA);
    let me = e
        .call(
            As::Bearer("pat-gus"),
            "GET",
            "/api/2.0/people/%40self",
            None,
        )
        .await
        .ok();
    assert_eq!(
        (me["id"].clone(), me["isVisitor"].clone()),
        (json!(GUS), json!(true))
    );
    let uma = As::Raw("pat-uma");
    assert_eq!(
        e.call(uma, "GET", "/api/2.0/people/uma.u", None).await.ok()["id"],
        UMA
    );
    assert_error(
        &e.call(uma, "GET", &format!("/api/2.0/people/{ADA}"), None)
            .await,
        403,
        "Access denied",
    );
}

// SRV GetAllProfiles (active users; count, startIndex; envelope total) and
// SimpleByFilterRequestDto (filterValue, employeeStatus, activationStatus, groupId,
// employeeType, isAdministrator); SMP search-user-by-extended-filter.
#[tokio::test]
async fn people_list_and_filter() {
    let e = env(&portal()).await;
    let list = |q: String| {
        let e = &e;
        async move {
            let r = e.get(&format!("/api/2.0/people{q}")).await;
            let v = r.json();
            let got: Vec<String> = r
                .ok()
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["displayName"].as_str().unwrap().to_owned())
                .collect();
            (
                got,
                v["count"].as_u64().unwrap(),
                v["total"].as_u64().unwrap(),
            )
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let active = s(&["Ada Admin", "Al Lee", "Gus Guest", "Ray Room", "Uma User"]);
    assert_eq!(list("".into()).await, (active.clone(), 5, 5));
    assert_eq!(
        list("?count=2&startIndex=1".into()).await,
        (s(&["Al Lee", "Gus Guest"]), 2, 5)
    );
    assert_eq!(list("?startIndex=5".into()).await, (vec![], 0, 5));
    assert_eq!(
        list("?filterValue=ROOM".into()).await,
        (s(&["Ray Room"]), 1, 1)
    );
    let mut reversed = active.clone();
    reversed.reverse();
    assert_eq!(list("?sortOrder=descending".into()).await.0, reversed);
    // The filter: active and pending by default.
    let with_pam = s(&[
        "Ada Admin",
        "Al Lee",
        "Gus Guest",
        "Pam Invited",
        "Ray Room",
        "Uma User",
    ]);
    assert_eq!(list("/filter".into()).await.0, with_pam);
    assert_eq!(
        list("/filter?filterValue=EXAMPLE.com".into()).await.0,
        with_pam
    );
    assert_eq!(
        list("/filter?employeeStatus=2".into()).await.0,
        s(&["Ted Gone"])
    );
    assert_eq!(
        list("/filter?employeeStatus=Terminated".into()).await.0,
        s(&["Ted Gone"])
    );
    assert_eq!(
        list("/filter?activationStatus=2".into()).await.0,
        s(&["Pam Invited"])
    );
    assert_eq!(
        list(format!("/filter?groupId={SUPPORT}")).await.0,
        s(&["Al Lee", "Ray Room", "Uma User"])
    );
    assert_eq!(
        list("/filter?employeeType=2".into()).await.0,
        s(&["Gus Guest"])
    );
    assert_eq!(
        list("/filter?employeeType=3".into()).await.0,
        s(&["Ada Admin", "Al Lee"])
    );
    assert_eq!(
        list("/filter?isAdministrator=true".into()).await.0,
        s(&["Ada Admin", "Al Lee"])
    );
    assert_eq!(
        list("/filter?filterValue=N&count=1&startIndex=1".into()).await,
        (s(&["Pam Invited"]), 1, 2)
    );
    assert_invalid(
        &e.get("/api/2.0/people/filter?employeeStatus=9").await,
        &["employeeStatus"],
    );
    assert_invalid(
        &e.get("/api/2.0/people/filter?groupId=x").await,
        &["groupId"],
    );
    assert_invalid(&e.get("/api/2.0/people?count=x").await, &["count"]);
}

// ---------------------------------------------------------------------------------------------
// Authentication, scopes, roles

// Reference §3 (SRV BaseStartup ForwardDefaultSelector, ApiKeyBearerAuthHandler,
// CookieAuthHandler; DOC api-keys.md, personal-access-tokens.md): API keys only as
// "Bearer sk-…" (exact, case-sensitive), a raw key → 401; tokens raw or Bearer; the
// `asc_auth_key` cookie; none or invalid → 401 with an EMPTY body (TST *_Anonymous_Unauthorized).
#[tokio::test]
async fn authentication_schemes() {
    let e = env(&portal()).await;
    let path = "/api/2.0/group";
    let lower = format!("bearer {ADMIN_KEY}");
    let double = format!("Bearer  {ADMIN_KEY}");
    let unknown = format!("sk-{}", "5".repeat(64));
    for who in [
        As::Bearer(ADMIN_KEY),
        As::Raw("pat-ada"),
        As::Bearer("pat-ada"),
        As::Cookie("pat-ada"),
    ] {
        assert_eq!(e.call(who, "GET", path, None).await.status, 200, "{who:?}");
    }
    // The cookie wins over a raw header value that is not a key.
    let r = e
        .send(
            e.http
                .get(e.url(path))
                .header("Authorization", "garbage")
                .header("Cookie", "asc_auth_key=pat-ada"),
        )
        .await;
    assert_eq!(r.status, 200);
    for who in [
        As::Raw(ADMIN_KEY),
        As::Raw(&lower),
        As::Raw(&double),
        As::Bearer(&unknown),
        As::Bearer("pat-nobody"),
        As::Raw("pat-ted"),
        As::Cookie("pat-ted"),
        As::Cookie(ADMIN_KEY),
        As::Raw("Basic YWRhOnNlY3JldA=="),
        As::Bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2ln"),
        As::Raw(""),
        As::Nobody,
    ] {
        assert_empty(&e.call(who, "GET", path, None).await, 401);
    }
    // Every group and people route refuses anonymous callers, writes included.
    for (method, path) in [
        ("GET", format!("/api/2.0/group/{DESIGNERS}")),
        ("GET", format!("/api/2.0/group/user/{UMA}")),
        ("POST", "/api/2.0/group".to_owned()),
        ("PUT", format!("/api/2.0/group/{DESIGNERS}")),
        ("DELETE", format!("/api/2.0/group/{DESIGNERS}")),
        ("PUT", format!("/api/2.0/group/{DESIGNERS}/members")),
        ("POST", format!("/api/2.0/group/{DESIGNERS}/members")),
        ("DELETE", format!("/api/2.0/group/{DESIGNERS}/members")),
        ("PUT", format!("/api/2.0/group/{DESIGNERS}/manager")),
        ("PUT", format!("/api/2.0/group/{DESIGNERS}/members/{SALES}")),
        ("GET", "/api/2.0/people".to_owned()),
        ("GET", "/api/2.0/people/filter".to_owned()),
        (
            "GET",
            "/api/2.0/people/email?email=ada@example.com".to_owned(),
        ),
        ("GET", "/api/2.0/people/@self".to_owned()),
        ("GET", format!("/api/2.0/people/{ADA}")),
    ] {
        let r = e
            .call(As::Nobody, method, &path, Some(json!({"members": [UMA]})))
            .await;
        assert_empty(&r, 401);
    }
    assert!(
        e.text().contains(&format!("    - id: {DESIGNERS}\n")),
        "nothing deleted"
    );
}

// Open item 1 (the 401 body is inferred): `unauthorized_body: envelope` answers as an
// AuthenticationException does (reference §4: message "Unauthorized", no stack trace).
#[tokio::test]
async fn unauthorized_body_can_be_an_envelope() {
    let yaml = portal().replace("docspace:\n", "docspace:\n  unauthorized_body: envelope\n");
    let e = env(&yaml).await;
    let r = e
        .call(As::Raw(ADMIN_KEY), "GET", "/api/2.0/group", None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Unauthorized"}, "status": 1, "statusCode": 401})
    );
}

// SRV Auth/AuthorizationExtension.cs: GET …/group needs accounts:read (or write), writes need
// accounts:write, GET …/people accounts:read or write; a scope failure is 403 with an empty
// body (reference §3, inferred). `people/@self` also takes accounts.self:read.
#[tokio::test]
async fn api_key_scopes() {
    let e = env(&portal()).await;
    let read = As::Bearer(READ_KEY);
    assert_eq!(
        e.call(read, "GET", "/api/2.0/group", None).await.status,
        200
    );
    assert_eq!(
        e.call(read, "GET", "/api/2.0/people", None).await.status,
        200
    );
    assert_eq!(
        e.call(read, "GET", "/api/2.0/people/@self", None)
            .await
            .status,
        200
    );
    let before = e.text();
    for (method, path) in [
        ("PUT", format!("/api/2.0/group/{DESIGNERS}/members")),
        ("DELETE", format!("/api/2.0/group/{DESIGNERS}/members")),
        ("DELETE", format!("/api/2.0/group/{DESIGNERS}")),
        ("POST", "/api/2.0/group".to_owned()),
    ] {
        let r = e
            .call(
                read,
                method,
                &path,
                Some(json!({"members": [UMA], "groupName": "x"})),
            )
            .await;
        assert_empty(&r, 403);
    }
    assert_eq!(e.text(), before);
    let rooms = As::Bearer(ROOMS_KEY);
    for path in ["/api/2.0/group", "/api/2.0/people", "/api/2.0/people/@self"] {
        assert_empty(&e.call(rooms, "GET", path, None).await, 403);
    }
    let own = As::Bearer(SELF_KEY);
    assert_eq!(
        e.call(own, "GET", "/api/2.0/people/@self", None).await.ok()["id"],
        ADA
    );
    assert_empty(&e.call(own, "GET", "/api/2.0/people", None).await, 403);
    assert_empty(&e.call(own, "GET", "/api/2.0/group", None).await, 403);
    // A key without `scopes` is a full-access key; writes work.
    let r = e
        .call(OWNER, "DELETE", &format!("/api/2.0/group/{WEB}"), None)
        .await;
    assert_eq!(r.status, 204);
}

// TST 13_Groups permission tests: owner and admin may do everything; a room admin may read but
// gets 403 on writes; a User or Guest gets 403 even on reads; a group's own manager who is a
// plain User gets 403 on member removal (GroupPermissionRemoveMembersTests). 403 from the
// controller is the "Access denied" envelope (reference §3). Model validation runs first.
#[tokio::test]
async fn roles() {
    let e = env(&portal()).await;
    let ray = As::Raw("pat-ray");
    for path in [
        "/api/2.0/group".to_owned(),
        format!("/api/2.0/group/{DESIGNERS}"),
        format!("/api/2.0/group/user/{UMA}"),
        "/api/2.0/people".to_owned(),
        "/api/2.0/people/filter".to_owned(),
        format!("/api/2.0/people/{UMA}"),
    ] {
        assert_eq!(e.call(ray, "GET", &path, None).await.status, 200, "{path}");
    }
    let before = e.text();
    let writes = [
        (
            "POST",
            "/api/2.0/group".to_owned(),
            json!({"groupName": "X"}),
        ),
        (
            "PUT",
            format!("/api/2.0/group/{DESIGNERS}"),
            json!({"groupName": "X"}),
        ),
        ("DELETE", format!("/api/2.0/group/{DESIGNERS}"), json!({})),
        (
            "PUT",
            format!("/api/2.0/group/{DESIGNERS}/members"),
            json!({"members": [RAY]}),
        ),
        (
            "POST",
            format!("/api/2.0/group/{DESIGNERS}/members"),
            json!({"members": [RAY]}),
        ),
        (
            "DELETE",
            format!("/api/2.0/group/{DESIGNERS}/members"),
            json!({"members": [UMA]}),
        ),
        (
            "PUT",
            format!("/api/2.0/group/{DESIGNERS}/manager"),
            json!({"userId": RAY}),
        ),
        (
            "PUT",
            format!("/api/2.0/group/{DESIGNERS}/members/{SALES}"),
            json!({}),
        ),
    ];
    for who in [ray, As::Raw("pat-uma"), As::Raw("pat-gus")] {
        for (method, path, body) in &writes {
            let r = e.call(who, method, path, Some(body.clone())).await;
            assert_error(&r, 403, "Access denied");
        }
    }
    assert_eq!(e.text(), before);
    for who in [As::Raw("pat-uma"), As::Raw("pat-gus")] {
        for path in [
            "/api/2.0/group".to_owned(),
            format!("/api/2.0/group/{DESIGNERS}"),
            format!("/api/2.0/group/user/{UMA}"),
            "/api/2.0/people".to_owned(),
            "/api/2.0/people/filter".to_owned(),
        ] {
            assert_error(&e.call(who, "GET", &path, None).await, 403, "Access denied");
        }
    }
    // Binding comes before the permission check.
    assert_invalid(
        &e.call(As::Raw("pat-uma"), "GET", "/api/2.0/group?count=0", None)
            .await,
        &["count"],
    );
}

// The admin role: same rights as the owner (TST 13_Groups), through its own token.
#[tokio::test]
async fn an_admin_may_write() {
    let yaml = portal().replace(
        "  tokens:\n",
        &format!("  tokens:\n    - {{ user: {AL}, token: pat-al }}\n"),
    );
    let e = env(&yaml).await;
    let r = e
        .call(
            As::Raw("pat-al"),
            "DELETE",
            &format!("/api/2.0/group/{SUPPORT}/members"),
            Some(json!({"members": [UMA]})),
        )
        .await;
    assert_eq!(ids(&r.ok()["members"]), [AL, RAY]);
}

// ---------------------------------------------------------------------------------------------
// Routing and bodies

// The `{id:guid}` constraints and ASP.NET routing (reference §1): no route → 404, a route of
// another method → 405, both without a body and before authentication; literals are
// case-insensitive and a trailing slash is ignored.
#[tokio::test]
async fn routing() {
    let e = env(&portal()).await;
    for path in [
        "/api/2.0/nothing",
        "/other",
        "/api/2.0/group/x/members",
        "/",
    ] {
        assert_empty(&e.call(As::Nobody, "GET", path, None).await, 404);
        assert_empty(&e.get(path).await, 404);
    }
    for (method, path) in [
        ("PATCH", format!("/api/2.0/group/{DESIGNERS}")),
        ("GET", format!("/api/2.0/group/{DESIGNERS}/members")),
        ("DELETE", "/api/2.0/people".to_owned()),
    ] {
        assert_empty(&e.call(OWNER, method, &path, None).await, 405);
    }
    assert_eq!(e.get("/API/2.0/GROUP/").await.status, 200);
    assert_eq!(
        e.get(&format!("/api/2.0/Group/{DESIGNERS}/")).await.status,
        200
    );
}

// [FromBody] binding: a body that is not JSON by its Content-Type → 415 without body; an
// empty body → 400 "A non-empty request body is required."; JSON that is not an object → 400
// (reference §4, model binding; inferred from ASP.NET).
#[tokio::test]
async fn request_bodies() {
    let e = env(&portal()).await;
    let url = e.url(&format!("/api/2.0/group/{DESIGNERS}/members"));
    let auth = format!("Bearer {ADMIN_KEY}");
    let body = format!(r#"{{"members":["{ADA}"]}}"#);
    let r = e
        .send(
            e.http
                .delete(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "text/plain")
                .body(body.clone()),
        )
        .await;
    assert_empty(&r, 415);
    let r = e
        .send(
            e.http
                .delete(&url)
                .header("Authorization", &auth)
                .body(body.clone()),
        )
        .await;
    assert_empty(&r, 415);
    let r = e
        .send(
            e.http
                .delete(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json"),
        )
        .await;
    assert_invalid(&r, &[""]);
    for bad in ["{not json", "[1]", "\"x\""] {
        let r = e
            .send(
                e.http
                    .delete(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .body(bad),
            )
            .await;
        assert_invalid(&r, &["$"]);
    }
    assert_eq!(e.group(DESIGNERS).unwrap().1, [UMA, ADA, TED]);
    // A charset parameter and property names in any case are fine.
    let r = e
        .send(
            e.http
                .delete(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json; charset=utf-8")
                .body(format!(r#"{{"Members":["{ADA}"]}}"#)),
        )
        .await;
    assert_eq!(ids(&r.ok()["members"]), [UMA]);
}

// ---------------------------------------------------------------------------------------------
// Persistence, the state file, the public API

// Each change is on disk before its answer, in the documented shape, and a restarted sandbox
// reads it back; a second sandbox (of either kind) cannot take a file in use.
#[tokio::test]
async fn persistence_and_the_lock() {
    let e = env(&portal()).await;
    e.call(
        OWNER,
        "DELETE",
        &format!("/api/2.0/group/{DESIGNERS}/members"),
        Some(json!({"members": [UMA]})),
    )
    .await
    .ok();
    let created = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": "New: one", "members": [PAM]})),
        )
        .await
        .ok();
    let text = e.text();
    assert!(!text.contains("# test portal"), "comments are not kept");
    assert!(
        text.starts_with("docspace:\n  users:\n    - { id: "),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "    - id: {DESIGNERS}\n      name: Designers\n      members:\n        - {ADA}\n        - {TED}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "    - id: {}\n      name: \"New: one\"\n      members:\n        - {PAM}\n  api_keys:\n",
            created["id"].as_str().unwrap()
        )),
        "the new group is appended: {text}"
    );
    assert!(text.contains(&format!("    - {{ user: {ADA}, key: {ADMIN_KEY} }}\n")));
    assert!(text.contains("scopes: [\"accounts:read\"]"));
    // No temp file is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(e._dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    // The file is locked while the sandbox runs, for both emulators.
    let options = StartOptions {
        lock_wait: Duration::from_millis(50),
        ..StartOptions::default()
    };
    let again = Sandbox::start_with(&e.path, "127.0.0.1:0".parse().unwrap(), options.clone()).await;
    match again {
        Err(SandboxError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a second sandbox started on a locked file"),
    }
    let b24 = roster::sandbox::bitrix24::Sandbox::start_with(
        &e.path,
        "127.0.0.1:0".parse().unwrap(),
        roster::sandbox::bitrix24::StartOptions {
            lock_wait: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        b24,
        Err(roster::sandbox::bitrix24::SandboxError::Locked { .. })
    ));
    // Restart: the same state is served.
    let Env { _dir, path, sb, .. } = e;
    sb.shutdown().await.unwrap();
    let sb = Sandbox::start_with(&path, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let e = Env {
        _dir,
        path,
        sb,
        http: crate::support::http(),
    };
    assert_eq!(e.text(), text, "loading does not rewrite the file");
    let g = e.get(&format!("/api/2.0/group/{DESIGNERS}")).await.ok();
    assert_eq!(g.get("manager"), None);
    assert_eq!(ids(&g["members"]), [ADA]);
    assert_eq!(e.get("/api/2.0/group").await.json()["total"], 5);
}

// A bad state file is refused with the file, line, column and field of the offending value;
// nothing is served (brief; house style §8).
#[tokio::test]
async fn bad_state_files_name_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let start = |text: String| {
        let path = path.clone();
        async move {
            std::fs::write(&path, text).unwrap();
            match Sandbox::start(&path, "127.0.0.1:0".parse().unwrap()).await {
                Ok(_) => panic!("started"),
                Err(e) => e,
            }
        }
    };
    let shown = path.display().to_string();
    // The manager is not a member (line 14 of the portal: `      manager: …`).
    let text = portal().replace(
        &format!("      members:\n        - {UMA}\n        - {ADA}\n"),
        &format!("      members:\n        - {ADA}\n"),
    );
    match start(text).await {
        SandboxError::Invalid {
            line,
            column,
            field,
            message,
            ..
        } => {
            assert_eq!((line, column), (Some(14), Some(16)));
            assert_eq!(field, "docspace.groups[0].manager");
            assert!(message.contains("is not in members"), "{message}");
        }
        other => panic!("{other}"),
    }
    let cases = [
        (
            portal().replace(
                &format!("id: {GUS}"),
                &format!("id: {}", GUS.to_uppercase()),
            ),
            format!(
                "{shown}:8:13: docspace.users[4].id: \"{}\" is not a UUID",
                GUS.to_uppercase()
            ),
        ),
        (
            portal().replace(&format!("id: {GUS}"), &format!("id: {ADA}")),
            format!(
                "{shown}:8:13: docspace.users[4].id: {ADA} is also the id of docspace.users[0]"
            ),
        ),
        (
            portal().replace(
                &format!("        - {RAY}\n    - id: {WEB}"),
                &format!("        - {NOBODY}\n    - id: {WEB}"),
            ),
            format!(
                "{shown}:22:11: docspace.groups[1].members[0]: user {NOBODY} is not in docspace.users"
            ),
        ),
        (
            portal().replace(ADMIN_KEY, &ADMIN_KEY.replace('a', "A")),
            format!(
                "{shown}:35:58: docspace.api_keys[1].key: an API key is \"sk-\" followed by 64 lowercase hex digits"
            ),
        ),
        (
            portal().replace("token: pat-gus", "token: sk-gus"),
            format!("{shown}:43:60: docspace.tokens[3].token: a token must not start with \"sk-\""),
        ),
        (
            portal().replace("type: room_admin", "type: roomadmin"),
            format!(
                "cannot parse state file {shown}:6:131: docspace.users[2].type: unknown variant `roomadmin`"
            ),
        ),
        (
            portal().replace(
                &format!("    - id: {SALES}\n"),
                &format!("    - id: {SALES}\n      extra: 1\n"),
            ),
            format!(
                "cannot parse state file {shown}:20:7: docspace.groups[1]: unknown field `extra`"
            ),
        ),
        (
            "users: []\n".to_owned(),
            format!("cannot parse state file {shown}:1:1: not a DocSpace state file"),
        ),
    ];
    for (text, want) in cases {
        let got = start(text).await.to_string();
        assert!(got.contains(&want), "\n got: {got}\nwant: {want}");
        for secret in [ADMIN_KEY, "pat-gus", "sk-gus"] {
            assert!(!got.contains(secret), "{secret} in {got}");
        }
    }
    let missing = dir.path().join("missing.yaml");
    assert!(matches!(
        Sandbox::start(&missing, "127.0.0.1:0".parse().unwrap()).await,
        Err(SandboxError::Read { .. })
    ));
}

// The public API the CLI uses (brief): base_url has no trailing slash; api_key prefers an
// owner's or admin's key; is_docspace_state tells the two kinds of state file apart.
#[tokio::test]
async fn public_api() {
    let e = env(&portal()).await;
    assert_eq!(e.sb.base_url(), format!("http://{}", e.sb.addr()));
    assert!(e.sb.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(
        e.sb.api_key().as_deref(),
        Some(ADMIN_KEY),
        "Uma's key comes first"
    );
    let only_uma = portal()
        .lines()
        .filter(|l| {
            !l.contains(&format!("user: {ADA}, key")) && !l.contains(&format!("user: {RAY}, key"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let e = env(&only_uma).await;
    assert_eq!(e.sb.api_key().as_deref(), Some(UMA_KEY));
    let e = env("docspace:\n").await;
    assert_eq!(e.sb.api_key(), None);
    assert!(is_docspace_state(&portal()));
    assert!(is_docspace_state("docspace:\n"));
    let b24 = std::fs::read_to_string(crate::support::repo("examples/sandbox.yaml")).unwrap();
    assert!(!is_docspace_state(&b24));
    assert!(!is_docspace_state("portal:\n  docspace: 1\n"));
}

// ---------------------------------------------------------------------------------------------
// Counters

// Brief: counters at GET /_sandbox/stats (not authenticated, not counted) and Sandbox::stats();
// per-route keys are METHOD + route template; write_requests counts non-GET requests that
// reached an endpoint.
#[tokio::test]
async fn counters() {
    let e = env(&portal()).await;
    e.get("/api/2.0/group").await.ok();
    e.get(&format!("/api/2.0/group/{SALES}")).await.ok();
    e.get(&format!("/api/2.0/group/{WEB}")).await.ok();
    let del = format!("/api/2.0/group/{DESIGNERS}/members");
    e.call(OWNER, "DELETE", &del, Some(json!({"members": [ADA]})))
        .await
        .ok();
    // A 404 of the endpoint and a role refusal reached it; 401, scope 403 and no route did not.
    e.call(
        OWNER,
        "DELETE",
        &format!("/api/2.0/group/{NO_GROUP}/members"),
        Some(json!({})),
    )
    .await;
    e.call(As::Raw("pat-ray"), "DELETE", &del, Some(json!({})))
        .await;
    e.call(As::Nobody, "DELETE", &del, Some(json!({}))).await;
    e.call(As::Bearer(READ_KEY), "DELETE", &del, Some(json!({})))
        .await;
    e.get("/api/2.0/nothing").await;
    let stats = e.sb.stats();
    assert_eq!(stats.http_requests, 9);
    assert_eq!(stats.write_requests, 3);
    assert_eq!(stats.rejected_429, 0);
    assert_eq!(stats.faults_injected, 0);
    assert_eq!(
        stats.route("DELETE /api/2.0/group/{id}/members"),
        RouteStats {
            http_requests: 5,
            rejected_429: 0,
            executed: 3
        }
    );
    assert_eq!(stats.route("GET /api/2.0/group/{id}").http_requests, 2);
    assert_eq!(stats.route("GET /api/2.0/group").executed, 1);
    assert_eq!(stats.route("(unknown)").http_requests, 1);
    assert_eq!(
        stats.route("PUT /api/2.0/group/{id}"),
        RouteStats::default()
    );
    assert_eq!(
        stats.routes.keys().collect::<Vec<_>>(),
        [
            "(unknown)",
            "DELETE /api/2.0/group/{id}/members",
            "GET /api/2.0/group",
            "GET /api/2.0/group/{id}"
        ]
    );
    // Served as JSON, without credentials, and not counted itself.
    let served = e.served_stats().await;
    assert_eq!(served, stats);
    assert_eq!(e.served_stats().await, stats);
    let raw = e.send(e.http.get(e.url(STATS_PATH))).await.json();
    assert_eq!(
        keys(&raw),
        [
            "faults_injected",
            "http_requests",
            "rejected_429",
            "routes",
            "write_requests"
        ]
    );
    assert_eq!(
        raw["routes"]["GET /api/2.0/group"],
        json!({"http_requests": 1, "rejected_429": 0, "executed": 1})
    );
}

// ---------------------------------------------------------------------------------------------
// Rate limiting (reference §5)

/// The portal with `rate_limit` set to `settings` (a flow mapping's inside).
fn limited(settings: &str) -> String {
    portal().replace(
        "docspace:\n",
        &format!("docspace:\n  rate_limit: {{ {settings} }}\n"),
    )
}

fn manual(unix: f64) -> (Arc<ManualClock>, StartOptions) {
    let clock = Arc::new(ManualClock::new(unix));
    let options = StartOptions {
        clock: clock.clone(),
        ..StartOptions::default()
    };
    (clock, options)
}

// BT appsettings (rateLimiterOptions.enable: false on a self-hosted server): off by default.
#[tokio::test]
async fn rate_limit_is_off_by_default() {
    let e = env(&limited("per_minute: 1")).await;
    for _ in 0..5 {
        assert_eq!(e.get("/api/2.0/group").await.status, 200);
    }
    assert_eq!(e.sb.stats().rejected_429, 0);
}

// SRV BaseStartup AddRateLimiter (sliding window per user); RRL RedisSlidingWindowRateLimiter
// (a refused request is not recorded; Retry-After = (int) seconds until the oldest one leaves)
// and RateLimitMetadata.OnRejected (429, no body, the headers); DOC basic-concepts "Rate
// limiting" (Reset in seconds, the default here).
#[tokio::test]
async fn sliding_window_per_user() {
    let (clock, options) = manual(1_700_000_000.0);
    let e = env_with(&limited("enabled: true, per_minute: 3"), options).await;
    for _ in 0..2 {
        assert_eq!(e.get("/api/2.0/group").await.status, 200);
    }
    clock.advance(Duration::from_millis(20_500));
    assert_eq!(e.get("/api/2.0/people/@self").await.status, 200);
    let r = e.get("/api/2.0/group").await;
    assert_empty(&r, 429);
    assert_eq!(r.header("retry-after"), Some("39"), "60 - 20.5, truncated");
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("40"));
    // Another user has a budget of their own; requests without valid credentials are limited
    // per client address, before the 401.
    assert_eq!(
        e.call(As::Raw("pat-ray"), "GET", "/api/2.0/group", None)
            .await
            .status,
        200
    );
    for _ in 0..3 {
        assert_empty(
            &e.call(As::Nobody, "GET", "/api/2.0/group", None).await,
            401,
        );
    }
    assert_empty(
        &e.call(As::Nobody, "GET", "/api/2.0/group", None).await,
        429,
    );
    // Refusals are not recorded: the two first requests leave at 60 s.
    clock.advance(Duration::from_millis(39_499));
    assert_eq!(e.get("/api/2.0/group").await.status, 429);
    clock.advance(Duration::from_millis(1));
    assert_eq!(e.get("/api/2.0/group").await.status, 200);
    assert_eq!(e.get("/api/2.0/group").await.status, 200);
    let r = e.get("/api/2.0/group").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("20"));
    let stats = e.sb.stats();
    assert_eq!(stats.rejected_429, 4);
    assert_eq!(stats.route("GET /api/2.0/group").rejected_429, 4);
    assert_eq!(
        stats.route("GET /api/2.0/group").executed,
        5,
        "2 + Ray + 2; 401s do not count"
    );
}

// Reference §5 open item: Reset as a unix time (the server's OpenAPI filter) or not sent (RRL's
// sliding-window lease carries no Reset); the limiter's headers on admitted requests when asked.
#[tokio::test]
async fn reset_header_and_success_headers_are_configurable() {
    let (_clock, options) = manual(1_700_000_000.0);
    let e = env_with(
        &limited("enabled: true, per_minute: 2, reset: epoch, headers_on_success: true"),
        options,
    )
    .await;
    let r = e.get("/api/2.0/group").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("1700000060"));
    e.get("/api/2.0/group").await.ok();
    let r = e.get("/api/2.0/group").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-reset"), Some("1700000060"));
    let (_clock, options) = manual(0.0);
    let e = env_with(
        &limited("enabled: true, per_minute: 1, reset: none"),
        options,
    )
    .await;
    let r = e.get("/api/2.0/group").await;
    assert_eq!(
        r.header("x-ratelimit-limit"),
        None,
        "not on success by default"
    );
    let r = e.get("/api/2.0/group").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-reset"), None);
    assert_eq!(r.header("retry-after"), Some("60"));
}

// SRV (10,000 POST and PUT per day, fixed window; RRL RedisFixedWindowRateLimiter): DELETE and
// GET do not count.
#[tokio::test]
async fn daily_post_put_limit() {
    let (clock, options) = manual(0.0);
    let e = env_with(&limited("enabled: true, post_put_per_day: 2"), options).await;
    let add = format!("/api/2.0/group/{WEB}/members");
    for _ in 0..2 {
        let r = e
            .call(OWNER, "PUT", &add, Some(json!({"members": [PAM]})))
            .await;
        assert_eq!(r.status, 200);
    }
    let r = e
        .call(OWNER, "DELETE", &add, Some(json!({"members": [PAM]})))
        .await;
    assert_eq!(r.status, 200);
    clock.advance(Duration::from_secs(3600));
    let r = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": "X"})),
        )
        .await;
    assert_empty(&r, 429);
    assert_eq!(r.header("retry-after"), Some("82800"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(
        e.group(WEB),
        Some((None, vec![])),
        "the DELETE went through"
    );
    clock.advance(Duration::from_secs(82_800));
    let r = e
        .call(
            OWNER,
            "POST",
            "/api/2.0/group",
            Some(json!({"groupName": "X"})),
        )
        .await;
    assert_eq!(r.status, 200);
}

/// A clock whose sleeps wait until the test opens the gate; it reports each sleep, so a test
/// knows a request is in flight. Time itself never moves.
struct GateClock {
    time: ManualClock,
    open: tokio::sync::watch::Sender<bool>,
    sleeping: Arc<tokio::sync::Semaphore>,
}

impl Clock for GateClock {
    fn monotonic(&self) -> Duration {
        self.time.monotonic()
    }
    fn unix(&self) -> f64 {
        self.time.unix()
    }
    fn sleep(&self, _d: Duration) -> Sleep {
        let mut open = self.open.subscribe();
        self.sleeping.add_permits(1);
        let wait: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
        });
        wait
    }
}

// SRV (15 concurrent non-GET and 50 concurrent GET requests per user, no queue); RRL
// RedisConcurrencyRateLimiter's lease carries no metadata, so its 429 has no headers. A
// request holds its slot until its answer is ready (the latency included).
#[tokio::test]
async fn concurrency_limits_per_kind() {
    let (open, _) = tokio::sync::watch::channel(false);
    let sleeping = Arc::new(tokio::sync::Semaphore::new(0));
    let clock = Arc::new(GateClock {
        time: ManualClock::new(0.0),
        open,
        sleeping: sleeping.clone(),
    });
    let options = StartOptions {
        clock: clock.clone(),
        ..StartOptions::default()
    };
    let yaml = limited("enabled: true, concurrent_get: 1, concurrent_write: 1")
        .replace("docspace:\n", "docspace:\n  latency_ms: 1\n");
    let e = Arc::new(env_with(&yaml, options).await);
    let add = format!("/api/2.0/group/{WEB}/members");
    let first = {
        let e = e.clone();
        let add = add.clone();
        tokio::spawn(async move {
            e.call(OWNER, "PUT", &add, Some(json!({"members": [PAM]})))
                .await
        })
    };
    sleeping.acquire().await.unwrap().forget();
    // The write is done (on disk) and waiting for its latency, holding the write slot.
    assert_eq!(e.group(WEB).unwrap().1, [PAM]);
    let second = {
        let e = e.clone();
        let add = add.clone();
        tokio::spawn(async move {
            e.call(OWNER, "DELETE", &add, Some(json!({"members": [PAM]})))
                .await
        })
    };
    sleeping.acquire().await.unwrap().forget();
    let read = {
        let e = e.clone();
        tokio::spawn(async move { e.get("/api/2.0/group").await })
    };
    sleeping.acquire().await.unwrap().forget();
    clock.open.send_replace(true);
    assert_eq!(first.await.unwrap().status, 200);
    let refused = second.await.unwrap();
    assert_empty(&refused, 429);
    assert_eq!(refused.header("retry-after"), None);
    assert_eq!(read.await.unwrap().status, 200, "GETs have their own slots");
    assert_eq!(
        e.group(WEB).unwrap().1,
        [PAM],
        "the refused DELETE did nothing"
    );
    // Slots are given back: the next write goes through.
    let r = e
        .call(OWNER, "DELETE", &add, Some(json!({"members": [PAM]})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(e.sb.stats().rejected_429, 1);
}

// ---------------------------------------------------------------------------------------------
// Latency and faults

// The sandbox's latency runs on its clock: with a ManualClock, a 5 s latency costs no real
// time but moves virtual time.
#[tokio::test]
async fn latency_runs_on_the_clock() {
    let (clock, options) = manual(0.0);
    let e = env_with(
        &portal().replace("docspace:\n", "docspace:\n  latency_ms: 5000\n"),
        options,
    )
    .await;
    let started = std::time::Instant::now();
    e.get("/api/2.0/group").await.ok();
    assert_empty(
        &e.call(As::Nobody, "GET", "/api/2.0/group", None).await,
        401,
    );
    assert_eq!(clock.monotonic(), Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The portal with `faults` set to `settings`.
fn faulty(settings: &str) -> String {
    portal().replace(
        "docspace:\n",
        &format!("docspace:\n  faults: {{ {settings} }}\n"),
    )
}

// Brief: faults like the Bitrix24 sandbox's — refusals before anything runs (429 empty with
// Retry-After, 500 envelope, 502 HTML), and after executing (502 HTML, 500, a cut body, a slow
// answer) — every one counted.
#[tokio::test]
async fn faults_refused_before_executing() {
    let remove = format!("/api/2.0/group/{DESIGNERS}/members");
    let body = json!({"members": [ADA]});
    let e = env(&faulty("seed: 1, rate_429: 1.0")).await;
    let r = e.call(OWNER, "DELETE", &remove, Some(body.clone())).await;
    assert_empty(&r, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    let e = env(&faulty("seed: 1, rate_500: 1.0")).await;
    let r = e.call(OWNER, "DELETE", &remove, Some(body.clone())).await;
    assert_error(&r, 500, "Internal server error");
    let e502 = env(&faulty("seed: 1, rate_502: 1.0")).await;
    let r = e502
        .call(OWNER, "DELETE", &remove, Some(body.clone()))
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.text.contains("502 Bad Gateway"));
    for env in [&e, &e502] {
        assert_eq!(
            env.group(DESIGNERS).unwrap().1,
            [UMA, ADA, TED],
            "nothing executed"
        );
        let s = env.sb.stats();
        assert_eq!((s.faults_injected, s.write_requests), (1, 0));
    }
    // Stats are never faulted.
    assert_eq!(e.served_stats().await.faults_injected, 1);
}

#[tokio::test]
async fn faults_after_executing() {
    let remove = format!("/api/2.0/group/{DESIGNERS}/members");
    let body = json!({"members": [ADA]});
    let (clock, options) = manual(0.0);
    let slow = env_with(&faulty("seed: 1, rate_slow: 1.0"), options).await;
    let r = slow
        .call(OWNER, "DELETE", &remove, Some(body.clone()))
        .await;
    assert_eq!(ids(&r.ok()["members"]), [UMA]);
    assert_eq!(
        clock.monotonic(),
        Duration::from_secs(40),
        "slow_ms defaults to 40000"
    );
    for (settings, status) in [
        ("rate_lost: 1.0", 502),
        ("rate_500_after: 1.0", 500),
        ("rate_truncated: 1.0", 200),
    ] {
        let e = env(&faulty(&format!("seed: 1, {settings}"))).await;
        let r = e.call(OWNER, "DELETE", &remove, Some(body.clone())).await;
        assert_eq!(r.status, status, "{settings}");
        match status {
            502 => assert!(r.text.contains("502 Bad Gateway")),
            500 => assert_eq!(r.json()["error"]["message"], "Internal server error"),
            _ => {
                assert!(
                    serde_json::from_str::<Value>(&r.text).is_err(),
                    "{}",
                    r.text
                );
                assert!(r.text.starts_with("{\"response\":{"));
            }
        }
        assert_eq!(
            e.group(DESIGNERS).unwrap().1,
            [UMA, TED],
            "{settings}: executed"
        );
        assert_eq!(e.sb.stats().faults_injected, 1);
        assert_eq!(e.sb.stats().write_requests, 1);
    }
}

// Seeded dice (brief): the same seed and requests give the same faults; the rates are bands.
#[tokio::test]
async fn faults_are_seeded() {
    async fn run(seed: u64) -> Vec<u16> {
        let e = env(&faulty(&format!(
            "seed: {seed}, rate_429: 0.3, rate_502: 0.3"
        )))
        .await;
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(e.get("/api/2.0/group").await.status);
        }
        let s = e.sb.stats();
        let faults = out.iter().filter(|s| **s != 200).count() as u64;
        assert_eq!(s.faults_injected, faults);
        assert_eq!(
            s.rejected_429,
            out.iter().filter(|s| **s == 429).count() as u64
        );
        out
    }
    let a = run(7).await;
    assert_eq!(run(7).await, a);
    assert_ne!(run(8).await, a);
    for status in [200, 429, 502] {
        let n = a.iter().filter(|s| **s == status).count();
        assert!((4..=28).contains(&n), "{status}: {n} of 40");
    }
}
