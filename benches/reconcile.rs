//! End-to-end reconcile benchmark: a generated portal served by the sandbox over loopback HTTP
//! with a rate-limit profile and latency on; `plan` then `apply` through roster's client.
//!
//! cargo bench --bench reconcile -- --groups 2000 --members 40 --churn 0.05 --profile cloud --latency-ms 20
//!
//! `--users 10000 --emails --group-names` puts 10,000 users on the portal and writes the file
//! with e-mails and group names, so the plan's resolution step is measured too.
//!
//! `--faults 503=0.05,429=0.02,500=0.02,lost=0.02` makes the sandbox refuse (or, for `lost`,
//! execute and then answer 502) that fraction of requests at random (seeded by `--seed`).
//!
//! `--system docspace` runs the DocSpace scenario instead: a DocSpace sandbox with its limiter
//! on (`--per-minute 1500`, the documented 1,500 requests a minute; `--per-minute 0` turns it
//! off, as on a self-hosted server), the file naming groups and people by UUID:
//!
//! cargo bench --bench reconcile -- --system docspace --groups 500 --members 40 --churn 0.05 --latency-ms 20
//!
//! Prints progress on stderr and one line of JSON on stdout (see `roster::loadtest::Measurement`
//! plus the scenario's parameters).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use roster::loadtest;
use roster::provider::bitrix24::{Options, RateProfile};
use roster::sandbox::bitrix24::state::{Faults, Portal, RateLimit};
use roster::sandbox::scenario::{self, Params};

struct Args {
    groups: usize,
    members: usize,
    churn: f64,
    profile: String,
    latency_ms: u64,
    seed: u64,
    faults: Option<Faults>,
    users: usize,
    emails: bool,
    group_names: bool,
    docspace: bool,
    per_minute: u32,
}

/// `503=0.05,429=0.02,500=0.02,lost=0.02`
fn faults(spec: &str, seed: u64) -> Result<Faults> {
    let mut f = Faults {
        seed,
        rate_503: 0.0,
        rate_429: 0.0,
        rate_500: 0.0,
        rate_lost: 0.0,
        ..Faults::default()
    };
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--faults: {part:?} is not KIND=RATE"))?;
        let v: f64 = v.parse()?;
        match k {
            "503" => f.rate_503 = v,
            "429" => f.rate_429 = v,
            "500" => f.rate_500 = v,
            "lost" => f.rate_lost = v,
            other => bail!("--faults: unknown kind {other}; expected 503, 429, 500 or lost"),
        }
    }
    Ok(f)
}

fn args() -> Result<Args> {
    let mut a = Args {
        groups: 2000,
        members: 40,
        churn: 0.05,
        profile: "cloud".into(),
        latency_ms: 20,
        seed: 1,
        faults: None,
        users: 0,
        emails: false,
        group_names: false,
        docspace: false,
        per_minute: 1500,
    };
    let mut fault_spec = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--groups" => a.groups = value()?.parse()?,
            "--members" => a.members = value()?.parse()?,
            "--churn" => a.churn = value()?.parse()?,
            "--profile" => a.profile = value()?,
            "--latency-ms" => a.latency_ms = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--faults" => fault_spec = Some(value()?),
            "--users" => a.users = value()?.parse()?,
            "--emails" => a.emails = true,
            "--group-names" => a.group_names = true,
            "--system" => match value()?.as_str() {
                "docspace" => a.docspace = true,
                "bitrix24" => a.docspace = false,
                other => bail!("--system: expected bitrix24 or docspace, got {other}"),
            },
            "--per-minute" => a.per_minute = value()?.parse()?,
            "--bench" => {}
            other => bail!(
                "unknown flag {other}; expected --groups --members --churn --profile --latency-ms --seed --faults --users --emails --group-names"
            ),
        }
    }
    a.faults = fault_spec.map(|s| faults(&s, a.seed)).transpose()?;
    Ok(a)
}

/// The DocSpace scenario: `loadtest::measure_docspace` on `scenario::generate_docspace`.
fn docspace(a: Args) -> Result<()> {
    use roster::sandbox::docspace::state::RateLimit as DsRateLimit;
    let mut scenario = scenario::generate_docspace(&Params {
        users: a.users,
        ..Params::new(a.groups, a.members, a.churn, a.seed)
    });
    scenario.state.latency_ms = a.latency_ms;
    if a.per_minute > 0 {
        let text = format!("{{ enabled: true, per_minute: {} }}", a.per_minute);
        let limit: DsRateLimit = serde_norway::from_str(&text)?;
        scenario.state.rate_limit = Some(limit);
    }
    eprintln!(
        "reconcile (DocSpace): {} groups x {} members, churn {}, {} requests/minute, latency {} ms",
        a.groups, a.members, a.churn, a.per_minute, a.latency_ms
    );
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let m = runtime.block_on(loadtest::measure_docspace(
        &scenario,
        dir.path(),
        roster::provider::docspace::Options {
            timeout: Duration::from_secs(120),
            ..roster::provider::docspace::Options::default()
        },
    ))?;
    let mut line = serde_json::to_value(&m)?;
    let obj = line.as_object_mut().expect("an object");
    obj.insert("system".into(), "docspace".into());
    obj.insert("members".into(), a.members.into());
    obj.insert("churn".into(), a.churn.into());
    obj.insert("per_minute".into(), a.per_minute.into());
    obj.insert("latency_ms".into(), a.latency_ms.into());
    obj.insert(
        "manager_changes_planned".into(),
        scenario.manager_changes.into(),
    );
    println!("{line}");
    Ok(())
}

fn main() -> Result<()> {
    let a = args()?;
    if a.docspace {
        return docspace(a);
    }
    let rate = RateProfile::parse(&a.profile).map_err(anyhow::Error::msg)?;
    let portal = Portal {
        rate_limit: rate.map(|r| RateLimit {
            burst: r.burst,
            per_second: r.per_second,
        }),
        latency_ms: a.latency_ms,
        faults: a.faults,
        ..Portal::default()
    };
    let params = Params {
        portal,
        users: a.users,
        emails: a.emails,
        group_names: a.group_names,
        ..Params::new(a.groups, a.members, a.churn, a.seed)
    };
    eprintln!(
        "reconcile: {} groups x {} members, churn {}, profile {}, latency {} ms",
        a.groups, a.members, a.churn, a.profile, a.latency_ms
    );
    let scenario = scenario::generate(&params);
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let m = runtime.block_on(loadtest::measure(
        &scenario,
        dir.path(),
        Options {
            rate,
            timeout: Duration::from_secs(120),
            ..Options::default()
        },
    ))?;
    let mut line = serde_json::to_value(&m)?;
    let obj = line.as_object_mut().expect("an object");
    obj.insert("members".into(), a.members.into());
    obj.insert("churn".into(), a.churn.into());
    obj.insert("profile".into(), a.profile.into());
    obj.insert("latency_ms".into(), a.latency_ms.into());
    if let Some(f) = a.faults {
        obj.insert("faults".into(), serde_json::json!({"503": f.rate_503, "429": f.rate_429, "500": f.rate_500, "lost": f.rate_lost}));
    }
    println!("{line}");
    Ok(())
}
