//! The soak benchmark: seeded random scenarios under random faults, each checked against
//! roster's promises (see `roster::soak` for Bitrix24, `roster::soak_docspace` for DocSpace).
//!
//! cargo bench --bench soak -- --scenarios 1000 --seed 1 [--system bitrix24|docspace|both]
//!     [--parallel N]   (DocSpace scenarios run at once; default 8)
//!
//! Prints one JSON line on stdout per system (default both, Bitrix24 first):
//! `{"system","scenarios","faults_injected","operations","violations",…,"seconds"}`; each
//! violation (and each break of a promise by a known defect, `known_defects`) is described on
//! stderr. Exits 1 when there is any violation.

use anyhow::{Context, Result, bail};
use roster::{soak, soak_docspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Systems {
    Bitrix24,
    DocSpace,
    Both,
}

struct Args {
    scenarios: usize,
    seed: u64,
    systems: Systems,
    /// DocSpace scenarios run at once.
    parallel: Option<usize>,
}

fn args() -> Result<Args> {
    let mut p = Args {
        scenarios: 100,
        seed: 1,
        systems: Systems::Both,
        parallel: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--scenarios" => p.scenarios = value("--scenarios")?.parse()?,
            "--seed" => p.seed = value("--seed")?.parse()?,
            "--parallel" => p.parallel = Some(value("--parallel")?.parse()?),
            "--system" => {
                p.systems = match value("--system")?.as_str() {
                    "bitrix24" => Systems::Bitrix24,
                    "docspace" => Systems::DocSpace,
                    "both" => Systems::Both,
                    other => bail!("unknown system {other}; expected bitrix24, docspace or both"),
                }
            }
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            other => bail!(
                "unknown argument {other}; expected --scenarios N --seed S --system bitrix24|docspace|both --parallel N"
            ),
        }
    }
    Ok(p)
}

/// The totals as one JSON line, led by the system's name and closed by the time taken (the
/// fields in between in their declared order).
fn line(system: &str, totals: &impl serde::Serialize, seconds: f64) -> Result<String> {
    let fields = serde_json::to_string(totals)?;
    let inner = fields
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .context("the totals are a JSON object")?;
    Ok(format!(
        "{{\"system\":{},{inner},\"seconds\":{:.1}}}",
        serde_json::to_string(system)?,
        seconds
    ))
}

/// The details on stderr; true when there was a violation.
fn report(system: &str, details: &[String], violations: usize) -> bool {
    for d in details {
        if d.starts_with("known defect") {
            eprintln!("{system}: {d}");
        } else {
            eprintln!("{system}: violation: {d}");
        }
    }
    violations > 0
}

fn main() -> Result<()> {
    let a = args()?;
    // RUST_LOG=roster=info shows why reads failed under faults, and the client's retries.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut failed = false;
    if a.systems != Systems::DocSpace {
        let started = std::time::Instant::now();
        let params = soak::Params {
            scenarios: a.scenarios,
            seed: a.seed,
        };
        let totals = runtime.block_on(soak::run(&params, dir.path()))?;
        let seconds = started.elapsed().as_secs_f64();
        failed |= report("bitrix24", &totals.details, totals.violations);
        eprintln!(
            "soak: bitrix24: {} scenarios in {seconds:.1} s",
            totals.scenarios
        );
        println!("{}", line("bitrix24", &totals, seconds)?);
    }
    if a.systems != Systems::Bitrix24 {
        let started = std::time::Instant::now();
        let mut params = soak_docspace::Params::new(a.scenarios, a.seed);
        if let Some(n) = a.parallel {
            params.parallel = n;
        }
        let totals = runtime.block_on(soak_docspace::run(&params, dir.path()))?;
        let seconds = started.elapsed().as_secs_f64();
        failed |= report("docspace", &totals.details, totals.violations);
        eprintln!(
            "soak: docspace: {} scenarios in {seconds:.1} s",
            totals.scenarios
        );
        println!("{}", line("docspace", &totals, seconds)?);
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
