//! roster: declarative Bitrix24 workgroup membership.
//!
//! `run()` is the imperative shell. It sequences load → connect → fetch → plan → render →
//! (confirm → apply → report) and owns every side effect: files, the terminal, the network,
//! the in-process sandbox. The modules it calls are pure (`spec`, `plan`, `render`) or own one
//! kind of I/O (`provider`, `sandbox`).

pub mod apply;
pub mod cli;
pub mod loadtest;
pub mod model;
pub mod plan;
pub mod progress;
pub mod provider;
pub mod render;
pub mod sandbox;
pub mod spec;

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use cli::{ApplyArgs, Cli, ColorChoice, Command, Format, PlanArgs, SandboxCommand};
use model::DesiredState;
use progress::Progress;
use provider::Provider;
use provider::bitrix24::{self, Webhook};
use render::Style;
use sandbox::bitrix24::Sandbox;

/// How the process should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, nothing failed (and, with `--detailed-exitcode`, no changes).
    Success,
    /// 1: an error, already reported on stderr.
    Failure,
    /// 2: `plan --detailed-exitcode` found changes.
    Changes,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Changes => 2,
        }
    }
}

/// Run one command line. Errors are returned for `main` to print once.
pub fn run(cli: Cli) -> Result<Exit> {
    init_tracing(
        cli.verbose,
        use_color(cli.color, io::stderr().is_terminal()),
    );
    let style = Style {
        color: use_color(cli.color, io::stdout().is_terminal()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Validate { file } => validate(&file),
            Command::Plan(args) => plan(args, style).await,
            Command::Apply(args) => apply(args, style).await,
            Command::Sandbox {
                command: SandboxCommand::Serve { state, listen },
            } => serve(&state, listen).await,
            Command::Sandbox {
                command:
                    SandboxCommand::Generate {
                        out,
                        groups,
                        members,
                        churn,
                        seed,
                    },
            } => generate(&out, groups, members, churn, seed),
        }
    })
}

/// Colour for a stream: as asked, or with `auto` only on a terminal and without `NO_COLOR`.
fn use_color(choice: ColorChoice, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

fn init_tracing(verbose: u8, color: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "roster=info",
        _ => "roster=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}

/// Write the product to stdout. A closed pipe (`roster plan | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Load and validate a desired-state file; on problems print the diagnostics to stderr.
/// Reads at most `spec::MAX_FILE_BYTES + 1` bytes, so `/dev/zero` or a huge file is refused
/// without exhausting memory.
fn load(file: &Path) -> Result<Option<DesiredState>> {
    use std::io::Read;
    let name = spec::escape(&file.display().to_string());
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            f.take(spec::MAX_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .with_context(|| format!("cannot read {name}"))?;
    match spec::parse_bytes(&file.display().to_string(), &bytes) {
        Ok(desired) => Ok(Some(desired)),
        Err(diags) => {
            let mut err = io::stderr().lock();
            for d in &diags.shown {
                let _ = writeln!(err, "error: {d}");
            }
            if diags.omitted > 0 {
                let _ = writeln!(
                    err,
                    "… and {} more problem(s) not shown (the first {} are)",
                    diags.omitted,
                    diags.shown.len()
                );
            }
            let _ = writeln!(
                err,
                "{name}: {} problem(s); nothing was sent to any portal",
                diags.total()
            );
            Ok(None)
        }
    }
}

fn validate(file: &Path) -> Result<Exit> {
    let Some(desired) = load(file)? else {
        return Ok(Exit::Failure);
    };
    let members: usize = desired.groups.values().map(|g| g.members.len()).sum();
    emit(&format!(
        "{}: valid ({} group(s), {} declared membership(s))\n",
        spec::escape(&file.display().to_string()),
        desired.groups.len(),
        members
    ))?;
    Ok(Exit::Success)
}

/// Where `--portal` points.
enum Portal {
    Webhook(Webhook),
    /// `sandbox:PATH`: the built-in emulator on that state file, in-process.
    Sandbox(PathBuf),
}

fn parse_portal(s: &str) -> Result<Portal> {
    if let Some(path) = s.strip_prefix("sandbox:") {
        if path.is_empty() {
            bail!("`sandbox:` needs a state file path, e.g. sandbox:examples/sandbox.yaml");
        }
        return Ok(Portal::Sandbox(PathBuf::from(path)));
    }
    Ok(Portal::Webhook(Webhook::parse(s)?))
}

/// A connected portal, and the in-process sandbox behind it if any (shut down by `close`).
struct Connection {
    provider: Provider,
    sandbox: Option<Sandbox>,
}

impl Connection {
    async fn open(args: &cli::PortalArgs) -> Result<Connection> {
        let portal = args.portal.as_str();
        let (webhook, sandbox) = match parse_portal(portal)? {
            Portal::Webhook(w) => (w, None),
            Portal::Sandbox(path) => {
                let sandbox = Sandbox::start(&path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                    .await
                    .with_context(|| format!("cannot start the sandbox on {}", path.display()))?;
                let url = sandbox.webhook_url().with_context(|| {
                    format!(
                        "{} declares no webhook to call the sandbox with",
                        path.display()
                    )
                })?;
                (Webhook::parse(&url)?, Some(sandbox))
            }
        };
        tracing::info!(portal = %webhook.display(), "connecting");
        let options = bitrix24::Options {
            rate: args.rate_limit.0,
            ..bitrix24::Options::default()
        };
        let client = bitrix24::Client::new(webhook, options)?;
        Ok(Connection {
            provider: Provider::Bitrix24(client),
            sandbox,
        })
    }

    /// Stop the in-process sandbox, making sure its state is on disk.
    async fn close(self) -> Result<()> {
        if let Some(s) = self.sandbox {
            s.shutdown()
                .await
                .context("cannot shut the sandbox down cleanly")?;
        }
        Ok(())
    }
}

async fn plan(args: PlanArgs, style: Style) -> Result<Exit> {
    let Some(desired) = load(&args.file)? else {
        return Ok(Exit::Failure);
    };
    let conn = Connection::open(&args.portal).await?;
    let fetched = fetch(&conn.provider, &desired).await;
    conn.close().await?;
    let current = fetched.context("cannot read the portal's current membership")?;
    let plan = plan::diff(&desired, &current);
    match args.format {
        Format::Text => emit(&render::text::plan(&plan, style))?,
        Format::Json => emit(&render::json::plan(&plan))?,
    }
    Ok(if args.detailed_exitcode && plan.summary().has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

async fn apply(args: ApplyArgs, style: Style) -> Result<Exit> {
    let Some(desired) = load(&args.file)? else {
        return Ok(Exit::Failure);
    };
    let conn = Connection::open(&args.portal).await?;
    let result = apply_connected(&args, &desired, &conn, style).await;
    conn.close().await?;
    result
}

async fn apply_connected(
    args: &ApplyArgs,
    desired: &DesiredState,
    conn: &Connection,
    style: Style,
) -> Result<Exit> {
    let current = fetch(&conn.provider, desired)
        .await
        .context("cannot read the portal's current membership")?;
    let plan = plan::diff(desired, &current);
    emit(&render::text::plan(&plan, style))?;
    if !plan.summary().has_changes() {
        return Ok(Exit::Success);
    }
    if !args.auto_approve && !confirm()? {
        return Ok(Exit::Failure);
    }
    let total = conn.provider.command_count(&apply::changes(&plan));
    let progress = Progress::start("applying", total);
    let stop = provider::CancellationToken::new();
    let report = apply::apply(&plan, &conn.provider, &|n| progress.inc(n), &stop).await;
    progress.finish();
    emit(&format!("\n{}", render::text::report(&report, style)))?;
    Ok(if report.all_done() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Read the declared groups' members, with progress for large files.
async fn fetch(
    provider: &Provider,
    desired: &DesiredState,
) -> Result<model::CurrentState, provider::FetchError> {
    let progress = Progress::start("reading", desired.groups.len());
    let result = provider.fetch(desired, &|n| progress.inc(n)).await;
    progress.finish();
    result
}

/// Ask on the terminal; refuse when there is none.
fn confirm() -> Result<bool> {
    if !io::stdin().is_terminal() {
        bail!(
            "refusing to apply: standard input is not a terminal, so nobody can confirm; pass --auto-approve to apply without asking"
        );
    }
    eprint!("\nDo you want to apply these changes? Only 'yes' will be accepted: ");
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if answer.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("Apply cancelled; nothing was changed.");
        Ok(false)
    }
}

async fn serve(state: &Path, listen: SocketAddr) -> Result<Exit> {
    let sandbox = Sandbox::start(state, listen)
        .await
        .with_context(|| format!("cannot start the sandbox on {}", state.display()))?;
    let url = sandbox
        .webhook_url()
        .unwrap_or_else(|| "(no webhook declared in the state file)".into());
    emit(&format!(
        "roster sandbox: Bitrix24 emulator on http://{} with state {}\nwebhook URL: {url}\nPress Ctrl-C to stop.\n",
        sandbox.addr(),
        state.display()
    ))?;
    shutdown_signal().await?;
    sandbox
        .shutdown()
        .await
        .context("cannot shut the sandbox down cleanly")?;
    Ok(Exit::Success)
}

fn generate(out: &Path, groups: usize, members: usize, churn: f64, seed: u64) -> Result<Exit> {
    if members < 1 || !(0.0..=1.0).contains(&churn) {
        bail!("--members must be at least 1 and --churn between 0 and 1");
    }
    let params = sandbox::scenario::Params {
        groups,
        members,
        churn,
        seed,
        portal: Default::default(),
    };
    let scenario = sandbox::scenario::generate(&params);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    sandbox::bitrix24::state::save(&out.join("portal.yaml"), &scenario.state)?;
    std::fs::write(out.join("groups.yaml"), &scenario.desired_yaml)
        .with_context(|| format!("cannot write {}", out.join("groups.yaml").display()))?;
    emit(&format!(
        "wrote {0}/portal.yaml ({groups} groups, {1} memberships) and {0}/groups.yaml
try: roster plan {0}/groups.yaml --portal sandbox:{0}/portal.yaml
",
        out.display(),
        scenario.memberships
    ))?;
    Ok(Exit::Success)
}

/// Ctrl-C, or SIGTERM from a service manager or CI runner.
async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")
}
