//! The soak's short version for CI: a few dozen seeded scenarios under random faults, each
//! checked against roster's promises (`roster::soak`). The full run is
//! `cargo bench --bench soak -- --scenarios 1000 --seed 1` (BENCHMARKS.md).

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_breaks_no_promise() {
    let dir = tempfile::tempdir().unwrap();
    let totals = roster::soak::run(
        &roster::soak::Params {
            scenarios: 120,
            seed: 20261201,
        },
        dir.path(),
    )
    .await
    .unwrap();
    assert_eq!(totals.violations, 0, "{:#?}", totals.details);
    assert_eq!(totals.scenarios, 120);
    assert!(totals.faults_injected > 100, "{totals:?}");
    assert!(totals.operations > 1000, "{totals:?}");
    assert!(
        totals.refused_by_limits > 0,
        "the limits were exercised: {totals:?}"
    );
}
