//! The soaks' short versions for CI: a few dozen seeded scenarios under random faults, each
//! checked against roster's promises, for Bitrix24 (`roster::soak`, issue 7's people features
//! included) and for DocSpace (`roster::soak_docspace`). The full runs are
//! `cargo bench --bench soak -- --scenarios 1000 --seed 1 [--system bitrix24|docspace|both]`
//! (BENCHMARKS.md).

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

/// The DocSpace soak's short version (`roster::soak_docspace`): seeded portals, files,
/// credentials and faults, each planned and applied through the real client against the
/// DocSpace sandbox and checked against the promises in the module's documentation. The full
/// run is `cargo bench --bench soak -- --system docspace --scenarios 300 --seed 1`.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_docspace_soak_breaks_no_promise() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let totals = roster::soak_docspace::run(
        &roster::soak_docspace::Params::new(SCENARIOS, 8),
        dir.path(),
    )
    .await
    .unwrap();
    eprintln!(
        "docspace soak: {} scenarios in {:.1} s: {totals:?}",
        totals.scenarios,
        started.elapsed().as_secs_f64()
    );
    // Breaks of a promise that a known defect of roster explains
    // (`soak_docspace::KNOWN_DEFECTS`) are reported, not failed on, until it is fixed.
    for d in totals
        .details
        .iter()
        .filter(|d| d.starts_with("known defect"))
    {
        eprintln!("{d}");
    }
    assert_eq!(totals.violations, 0, "{:#?}", totals.details);
    assert_eq!(totals.scenarios, SCENARIOS);
    // Everything the promises are about was exercised: faults, manager changes, plans refused
    // by the limits and for the key's rights, users DocSpace skips, users changed between
    // plan and apply, members made the manager between plan and apply.
    assert!(totals.faults_injected > 20, "{totals:?}");
    assert!(totals.rejected_429 > 0, "{totals:?}");
    assert!(totals.manager_changes > 0, "{totals:?}");
    assert!(totals.refused_by_limits > 0, "{totals:?}");
    assert!(totals.refused_by_access > 0, "{totals:?}");
    assert!(totals.skipped_by_docspace > 0, "{totals:?}");
    assert!(totals.moved_users > 0, "{totals:?}");
    assert!(totals.late_managers > 0, "{totals:?}");
}

const SCENARIOS: usize = 32;
