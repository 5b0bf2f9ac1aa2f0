//! The soak benchmark: seeded random scenarios under random faults, each checked against
//! roster's promises (see `roster::soak`).
//!
//! cargo bench --bench soak -- --scenarios 1000 --seed 1
//!
//! Prints one JSON line on stdout: `{"scenarios","faults_injected","operations","violations",…}`;
//! each violation (and each break of a promise by a known defect, `known_defects`) is described
//! on stderr. Exits 1 when there is any violation.

use anyhow::{Context, Result, bail};
use roster::soak::{self, Params};

fn args() -> Result<Params> {
    let mut p = Params {
        scenarios: 100,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--scenarios" => p.scenarios = value("--scenarios")?.parse()?,
            "--seed" => p.seed = value("--seed")?.parse()?,
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            other => bail!("unknown argument {other}; expected --scenarios N --seed S"),
        }
    }
    Ok(p)
}

fn main() -> Result<()> {
    let params = args()?;
    // RUST_LOG=roster=info shows why reads failed under faults, and the client's retries.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir()?;
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let totals = runtime.block_on(soak::run(&params, dir.path()))?;
    for d in &totals.details {
        if d.starts_with("known defect") {
            eprintln!("{d}");
        } else {
            eprintln!("violation: {d}");
        }
    }
    eprintln!(
        "soak: {} scenarios in {:.1} s",
        totals.scenarios,
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&totals)?);
    if totals.violations > 0 {
        std::process::exit(1);
    }
    Ok(())
}
