//! Reconciling generated portals through the real client and sandbox over HTTP: exact request
//! counts at the cloud rate limit, and convergence under injected 503/429/500 answers.

use std::time::Duration;

use roster::loadtest::{self, Measurement};
use roster::provider::bitrix24::{Options, RateProfile};
use roster::sandbox::bitrix24::state::{Faults, Portal, RateLimit};
use roster::sandbox::scenario::{self, Params};

fn portal(rate: RateProfile, faults: Option<Faults>) -> Portal {
    Portal {
        rate_limit: Some(RateLimit {
            burst: rate.burst,
            per_second: rate.per_second,
        }),
        faults,
        ..Portal::default()
    }
}

async fn run(params: Params, options: Options) -> Measurement {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario::generate(&params);
    loadtest::measure(&s, dir.path(), options).await.unwrap()
}

/// The small benchmark scenario, run by CI: 200 groups × 40 members, 5 % churn, cloud limits.
/// Counts are exact; times are not asserted.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_groups_take_the_fewest_requests() {
    let m = run(
        Params {
            groups: 200,
            members: 40,
            churn: 0.05,
            seed: 1,
            portal: portal(RateProfile::CLOUD, None),
            ..Params::new(0, 0, 0.0, 0)
        },
        Options {
            rate: Some(RateProfile::CLOUD),
            ..Options::default()
        },
    )
    .await;
    assert!(m.converged && m.not_done == 0, "{m:?}");
    assert_eq!(m.http_requests, m.min_http_requests, "{m:?}");
    assert_eq!(
        (m.rejected_503, m.rejected_429, m.retries),
        (0, 0, 0),
        "{m:?}"
    );
    // Per run (plan, apply): one lookup (the caller's 2 commands and 161 user IDs, 50 a
    // command) and 4 batches of reads; then the coalesced writes, 50 a batch.
    assert_eq!(
        (m.groups, m.memberships, m.operations),
        (200, 8000, 400),
        "{m:?}"
    );
    assert_eq!(
        (m.http_requests, m.commands),
        (2 * (1 + 4) + 8, 2 * (6 + 200) + 363),
        "{m:?}"
    );
    assert_eq!(
        (m.resolve_requests, m.min_resolve_requests),
        (1, 1),
        "{m:?}"
    );
    assert!(m.resolve_requests <= m.resolve_bound, "{m:?}");
}

/// A file that names people by e-mail, on a portal of 3,000 users: the resolution takes one
/// request (2 + ⌈E/50⌉ commands), within issue 7's bound min(⌈N/50⌉, 1 + ⌈U/2,500⌉).
#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_e_mails_resolves_in_the_fewest_requests() {
    let m = run(
        Params {
            portal: portal(RateProfile::CLOUD, None),
            users: 3000,
            emails: true,
            ..Params::new(100, 40, 0.05, 2)
        },
        Options {
            rate: Some(RateProfile::CLOUD),
            ..Options::default()
        },
    )
    .await;
    assert!(m.converged && m.not_done == 0, "{m:?}");
    assert_eq!(m.http_requests, m.min_http_requests, "{m:?}");
    assert!(m.identities > 2000, "{m:?}");
    assert_eq!(m.resolve_requests, m.min_resolve_requests, "{m:?}");
    assert!(m.resolve_requests <= m.resolve_bound, "{m:?}");
}

/// With the portal refusing requests at random (and sometimes doing the work but losing the
/// response), apply still completes, reports every change done, the portal reaches the desired
/// state, and every refusal was retried. (A fast-draining bucket and short waits keep the test
/// quick: each 503 makes the client wait one drain interval, each 429 one throttle wait.)
#[tokio::test(flavor = "multi_thread")]
async fn converges_under_injected_faults() {
    let faults = Faults {
        seed: 42,
        rate_503: 0.2,
        rate_429: 0.1,
        rate_500: 0.1,
        rate_lost: 0.1,
        ..Faults::default()
    };
    let rate = RateProfile {
        burst: 50.0,
        per_second: 100.0,
    };
    let m = run(
        Params {
            groups: 120,
            members: 20,
            churn: 0.1,
            seed: 3,
            portal: portal(rate, Some(faults)),
            ..Params::new(0, 0, 0.0, 0)
        },
        Options {
            rate: Some(rate),
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_attempts: 30,
            throttle_wait: Duration::from_millis(5),
            ..Options::default()
        },
    )
    .await;
    assert!(m.converged && m.not_done == 0, "{m:?}");
    assert!(
        m.rejected_503 + m.rejected_429 > 0,
        "faults were injected: {m:?}"
    );
    assert!(
        m.retries >= m.rejected_503 + m.rejected_429,
        "every refusal is retried: {m:?}"
    );
}
