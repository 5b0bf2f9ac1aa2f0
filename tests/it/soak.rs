//! The soak's short version for CI: a few dozen seeded scenarios under random faults, each
//! checked against roster's promises (`roster::soak`), issue 7's people features included. The
//! full run is `cargo bench --bench soak -- --scenarios 1000 --seed 1` (BENCHMARKS.md).

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_breaks_no_promise() {
    let dir = tempfile::tempdir().unwrap();
    // 84 scenarios (it was 120 before each resolved the file and checked issue 7's
    // features): the test keeps its ~11 s.
    let totals = roster::soak::run(
        &roster::soak::Params {
            scenarios: 84,
            seed: 20261201,
        },
        dir.path(),
    )
    .await
    .unwrap();
    // Breaks of a promise that a known defect of roster explains (`soak::KNOWN_DEFECTS`) are
    // reported, not failed on, until it is fixed.
    for d in totals
        .details
        .iter()
        .filter(|d| d.starts_with("known defect"))
    {
        eprintln!("{d}");
    }
    assert_eq!(totals.violations, 0, "{:#?}", totals.details);
    assert_eq!(totals.scenarios, 84);
    assert!(totals.faults_injected > 100, "{totals:?}");
    assert!(totals.operations > 1000, "{totals:?}");
    assert!(
        totals.refused_by_limits > 0,
        "the limits were exercised: {totals:?}"
    );
    // Issue 7's features were exercised: invitations, admitted requests, owner changes, and
    // an owner change the webhook's user may not make.
    assert!(totals.invites > 0, "{totals:?}");
    assert!(totals.accepts > 0, "{totals:?}");
    assert!(totals.owner_changes > 0, "{totals:?}");
    assert!(totals.refused_by_access > 0, "{totals:?}");
}
