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
pub mod resolve;
pub mod sandbox;
pub mod soak;
pub mod spec;

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use cli::{ApplyArgs, Cli, ColorChoice, Command, Format, PlanArgs, SandboxCommand};
use model::DesiredState;
use progress::Progress;
use provider::Provider;
use provider::bitrix24::{self, Auth, OAuthConfig, Secret, Webhook};
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
    /// 130: apply was interrupted (SIGINT/SIGTERM); the report of what happened was printed.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Changes => 2,
            Exit::Interrupted => 130,
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
                        force,
                    },
            } => generate(&out, groups, members, churn, seed, force),
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

/// Logs on stderr. By default only roster's own warnings (what a run is waiting for), without
/// timestamps; third-party crates (rustls, hyper) stay silent unless `RUST_LOG` asks for them.
fn init_tracing(verbose: u8, color: bool) {
    let default = match verbose {
        0 => "off,roster=warn",
        1 => "off,roster=info",
        _ => "off,roster=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(color)
        .with_target(false);
    let _ = if verbose == 0 {
        builder.event_format(Plain).try_init()
    } else {
        builder.try_init()
    };
}

/// The default log format: `roster: warning: MESSAGE key=value`, like roster's other stderr
/// lines, without timestamps or padding.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        write!(writer, "roster: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
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
fn load(file: &Path) -> Result<Option<spec::Spec>> {
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
        Ok(spec) => Ok(Some(spec)),
        Err(diags) => {
            print_diagnostics(&name, &diags);
            Ok(None)
        }
    }
}

/// Errors on `err`, then a count of those not shown.
fn print_errors(err: &mut impl Write, shown: &[spec::Diagnostic], omitted: usize) {
    for d in shown {
        let _ = writeln!(err, "error: {d}");
    }
    if omitted > 0 {
        let _ = writeln!(
            err,
            "… and {omitted} more problem(s) not shown (the first {} are)",
            shown.len()
        );
    }
}

/// The diagnostics on stderr, then how many there were.
fn print_diagnostics(name: &str, diags: &spec::Diagnostics) {
    let mut err = io::stderr().lock();
    print_errors(&mut err, &diags.shown, diags.omitted);
    let _ = writeln!(
        err,
        "{name}: {} problem(s); nothing was sent to any portal",
        diags.total()
    );
}

fn validate(file: &Path) -> Result<Exit> {
    let Some(spec) = load(file)? else {
        return Ok(Exit::Failure);
    };
    let members: usize = spec
        .groups
        .iter()
        .map(|g| g.moderators.len() + g.members.len())
        .sum();
    emit(&format!(
        "{}: valid ({} group(s), {} declared membership(s))\n",
        spec::escape(&file.display().to_string()),
        spec.groups.len(),
        members
    ))?;
    Ok(Exit::Success)
}

/// Where `--portal` points.
enum Portal {
    /// A webhook URL, or a REST endpoint with OAuth tokens.
    Remote(Auth),
    /// `sandbox:PATH`: the built-in emulator on that state file, in-process.
    Sandbox(PathBuf),
}

fn parse_portal(s: &str, token_file: Option<&Path>) -> Result<Portal> {
    if let Some(path) = s.strip_prefix("sandbox:") {
        if path.is_empty() {
            bail!("`sandbox:` needs a state file path, e.g. sandbox:examples/sandbox.yaml");
        }
        return Ok(Portal::Sandbox(PathBuf::from(path)));
    }
    Ok(Portal::Remote(Auth::parse(s, &oauth_config(token_file))?))
}

/// The OAuth settings from the environment (secrets never come from flags: they would show in
/// process lists and shell history) and `--oauth-token-file`.
fn oauth_config(token_file: Option<&Path>) -> OAuthConfig {
    use bitrix24::oauth;
    let var = |name: &str| std::env::var(name).ok();
    OAuthConfig {
        access_token: var(oauth::ENV_ACCESS_TOKEN).map(Secret::new),
        refresh_token: var(oauth::ENV_REFRESH_TOKEN).map(Secret::new),
        client_id: var(oauth::ENV_CLIENT_ID),
        client_secret: var(oauth::ENV_CLIENT_SECRET).map(Secret::new),
        server: var(oauth::ENV_SERVER),
        token_file: token_file.map(Path::to_path_buf),
    }
}

/// A connected portal, and the in-process sandbox behind it if any (shut down by `close`).
struct Connection {
    provider: Provider,
    sandbox: Option<Sandbox>,
}

impl Connection {
    async fn open(args: &cli::PortalArgs) -> Result<Connection> {
        let portal = args.portal.as_str();
        let (auth, sandbox) = match parse_portal(portal, args.oauth_token_file.as_deref())? {
            Portal::Remote(a) => (a, None),
            Portal::Sandbox(path) => {
                let sandbox = Sandbox::start_with(
                    &path,
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    sandbox_options()?,
                )
                .await
                .with_context(|| format!("cannot start the sandbox on {}", path.display()))?;
                let url = sandbox.webhook_url().with_context(|| {
                    format!(
                        "{} declares no webhook to call the sandbox with",
                        path.display()
                    )
                })?;
                (Auth::from(Webhook::parse(&url)?), Some(sandbox))
            }
        };
        tracing::info!(portal = %auth.display(), "connecting");
        let options = bitrix24::Options {
            rate: args.rate_limit.0,
            timeout: args.timeout,
            ..bitrix24::Options::default()
        };
        let client = bitrix24::Client::new(auth, options)?;
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

/// Everything a plan is made of, read and computed before anything is sent.
pub(crate) struct Prepared {
    /// The file resolved against the portal: the groups that resolved, errors, warnings and
    /// the people and groups learned on the way.
    pub(crate) resolved: resolve::Resolved,
    pub(crate) plan: plan::Plan,
    pub(crate) breaches: Vec<plan::LimitBreach>,
    /// What the caller may not do (empty when the caller is unknown: see `warnings`).
    pub(crate) access: Vec<plan::AccessProblem>,
    /// What the portal kept roster from seeing (a webhook scope), one line each.
    pub(crate) portal_warnings: Vec<String>,
}

/// Resolve the file's people and groups, read the groups, plan, and check limits and
/// permissions. Sends no write. The load test measures exactly this.
pub(crate) async fn prepare(
    spec: &spec::Spec,
    provider: &Provider,
    options: plan::Options,
) -> Result<Prepared> {
    let lookups = provider
        .lookup(&resolve::wanted(spec))
        .await
        .context("cannot look up the file's people and groups on the portal")?;
    let mut resolved = resolve::resolve(spec, &lookups);
    let progress = Progress::start("reading", resolved.desired.groups.len());
    let read = provider
        .fetch_each(&resolved.desired, &|n| progress.inc(n))
        .await;
    progress.finish();
    let (current, unread) = read.context("cannot read the portal's current membership")?;
    // A group that cannot be read (missing, or secret to the run's user) is an error at its
    // place in the file, like an unresolved reference: the rest is still planned.
    if !unread.is_empty() {
        for (id, why) in &unread {
            resolved.desired.groups.remove(id);
            let message = format!("cannot read group {id}: {why}");
            match group_position(spec, &lookups, *id) {
                Some(at) => resolved.errors.push(spec.diagnostic(at, message)),
                None => resolved.errors.push(spec::Diagnostic {
                    file: spec.file.clone(),
                    line: 1,
                    column: 1,
                    path: String::new(),
                    message,
                }),
            }
        }
        resolved.errors.sort_by_key(|d| (d.line, d.column));
    }
    resolved
        .warnings
        .extend(resolve::name_mismatches(spec, &current));
    for (id, group) in &current.groups {
        if let Some(name) = &group.name {
            resolved.directory.groups.insert(*id, name.clone());
        }
    }
    let plan = plan::diff_with(&resolved.desired, &current, options);
    // People the plan shows that the file did not name (members to remove, pending rows).
    let unknown: std::collections::BTreeSet<model::UserId> = plan
        .groups
        .iter()
        .flat_map(|g| g.entries.iter().map(plan::Entry::user))
        .filter(|u| !resolved.directory.users.contains_key(u))
        .collect();
    if !unknown.is_empty() {
        let ids: Vec<model::UserId> = unknown.into_iter().collect();
        match provider.people(&ids).await {
            Ok(people) => {
                for p in people {
                    resolved.directory.users.insert(p.id, p);
                }
            }
            Err(e) => tracing::warn!(
                "cannot look up {} user(s) the plan shows, so they are shown by ID: {e}",
                ids.len()
            ),
        }
    }
    let breaches = plan::check_limits(&resolved.desired, &current, &plan);
    let mut portal_warnings = provider.read_warnings();
    let access = match lookups.caller {
        Some(caller) => plan::access::check(&plan, &current, &caller),
        None => {
            let why = "roster cannot tell which user the portal acts as (user.current or user.admin failed), so permissions were not checked before apply";
            // The lookup said so on stderr; the JSON plan says it here. (Without the user
            // scope the provider's own warning covers it.)
            if lookups.users_unavailable.is_none() {
                portal_warnings.push(why.to_owned());
            }
            Vec::new()
        }
    };
    Ok(Prepared {
        portal_warnings,
        resolved,
        plan,
        breaches,
        access,
    })
}

/// Where the file declares the group that resolved to `id` (by ID, or by a name the lookup
/// found for it).
fn group_position<'a>(
    spec: &'a spec::Spec,
    lookups: &model::Lookups,
    id: model::GroupId,
) -> Option<&'a spec::At> {
    spec.groups
        .iter()
        .find(|g| match &g.group.value {
            spec::GroupRef::Id(g) => *g == id,
            spec::GroupRef::Name(n) => lookups
                .groups_by_name
                .get(n)
                .is_some_and(|found| found.iter().any(|(g, _)| *g == id)),
        })
        .map(|g| &g.group.at)
}

/// Resolve's errors and warnings on stderr. True when there were errors.
fn report_resolution(file: &Path, resolved: &resolve::Resolved) -> bool {
    let mut err = io::stderr().lock();
    for d in &resolved.warnings {
        let _ = writeln!(err, "warning: {d}");
    }
    print_errors(&mut err, &resolved.errors, resolved.errors_omitted);
    let total = resolved.errors.len() + resolved.errors_omitted;
    if total > 0 {
        let _ = writeln!(
            err,
            "{}: {total} problem(s) found on the portal; the groups with them are left out of the plan",
            spec::escape(&file.display().to_string())
        );
    }
    total > 0
}

async fn plan(args: PlanArgs, style: Style) -> Result<Exit> {
    let Some(spec) = load(&args.file)? else {
        return Ok(Exit::Failure);
    };
    let conn = Connection::open(&args.portal).await?;
    let options = plan::Options {
        allow_owner_change: args.allow_owner_change,
    };
    let prepared = prepare(&spec, &conn.provider, options).await;
    conn.close().await?;
    let p = prepared?;
    let unresolved = report_resolution(&args.file, &p.resolved);
    let dir = &p.resolved.directory;
    match args.format {
        Format::Text => emit(&render::text::plan(&p.plan, dir, style))?,
        Format::Json => emit(&render::json::document(
            &p.plan,
            dir,
            &render::json::Extras {
                limit_breaches: Some(&p.breaches),
                errors: Some(&p.resolved.errors),
                warnings: Some(&p.resolved.warnings),
                access_problems: Some(&p.access),
                portal_warnings: Some(&p.portal_warnings),
            },
        ))?,
    }
    if !p.access.is_empty() {
        eprint!("{}", render::text::access_problems(&p.access, "warning"));
        eprintln!(
            "roster: apply would refuse this plan before sending anything: the portal does not let this webhook's user make the changes above"
        );
    }
    let refused = refuse_mass_removal(&p.breaches, args.allow_mass_removal, "plan");
    if unresolved || refused {
        return Ok(Exit::Failure);
    }
    Ok(
        if args.detailed_exitcode && p.plan.summary().has_changes() {
            Exit::Changes
        } else {
            Exit::Success
        },
    )
}

async fn apply(args: ApplyArgs, style: Style) -> Result<Exit> {
    let Some(spec) = load(&args.file)? else {
        return Ok(Exit::Failure);
    };
    let conn = Connection::open(&args.portal).await?;
    // From here on an interrupt never kills apply mid-way: while reading or at the prompt it
    // ends the run with nothing sent; while writing it stops new writes and still reports.
    let signals = Signals::new()?;
    let result = apply_connected(&args, &spec, &conn, style, signals).await;
    conn.close().await?;
    result
}

/// What became of a step an interrupt may cut short.
enum Step<T> {
    Done(T),
    Interrupted,
}

/// Run `work` unless SIGINT/SIGTERM comes first. Only for steps that send no write: dropping
/// them half-way loses nothing.
async fn unless_interrupted<T>(
    signals: &mut Signals,
    work: impl std::future::Future<Output = T>,
) -> Step<T> {
    tokio::select! {
        out = work => Step::Done(out),
        _ = signals.next() => Step::Interrupted,
    }
}

/// The message and exit for an interrupt before any write was sent.
fn interrupted_before_writing(when: &str) -> Result<Exit> {
    eprintln!("\nroster: interrupted {when}; nothing was sent");
    Ok(Exit::Interrupted)
}

async fn apply_connected(
    args: &ApplyArgs,
    spec: &spec::Spec,
    conn: &Connection,
    style: Style,
    mut signals: Signals,
) -> Result<Exit> {
    let options = plan::Options {
        allow_owner_change: args.allow_owner_change,
    };
    let Step::Done(prepared) =
        unless_interrupted(&mut signals, prepare(spec, &conn.provider, options)).await
    else {
        return interrupted_before_writing("while reading the portal");
    };
    let Prepared {
        resolved,
        plan,
        breaches,
        access,
        ..
    } = prepared?;
    let dir = &resolved.directory;
    let desired = &resolved.desired;
    let unresolved = report_resolution(&args.file, &resolved);
    emit(&render::text::plan(&plan, dir, style))?;
    // Everything below is checked on the plan, before anything is sent.
    if unresolved {
        eprintln!(
            "roster: apply refused: the file has references the portal does not resolve (above); nothing was sent"
        );
        return Ok(Exit::Failure);
    }
    if !access.is_empty() {
        eprint!("{}", render::text::access_problems(&access, "error"));
        eprintln!(
            "roster: apply refused: the portal does not let this webhook's user make the changes above; nothing was sent"
        );
        return Ok(Exit::Failure);
    }
    if refuse_mass_removal(&breaches, args.allow_mass_removal, "apply") {
        return Ok(Exit::Failure);
    }
    if !plan.summary().has_changes() {
        return Ok(Exit::Success);
    }
    if !args.auto_approve {
        if !io::stdin().is_terminal() {
            bail!(
                "refusing to apply: standard input is not a terminal, so nobody can confirm; pass --auto-approve to apply without asking"
            );
        }
        match unless_interrupted(&mut signals, tokio::task::spawn_blocking(confirm)).await {
            Step::Done(answer) => {
                if !answer.context("the confirmation prompt failed")?? {
                    return Ok(Exit::Failure);
                }
            }
            // The blocked read of the terminal cannot be cancelled, and the runtime would wait
            // for it: leave at once (nothing was sent; a sandbox's state is already on disk).
            Step::Interrupted => {
                eprintln!("\nApply cancelled; nothing was changed.");
                std::process::exit(130);
            }
        }
        // The prompt may have waited for minutes: re-read the groups the plan changes and
        // refuse if what would be sent is no longer what was shown (a member made owner while
        // we waited must not be sent a delete, whatever the portal would do with it).
        let Step::Done(moved) = unless_interrupted(
            &mut signals,
            recheck(desired, &plan, &conn.provider, options),
        )
        .await
        else {
            return interrupted_before_writing("while reading the portal again");
        };
        if let Some(changed) = moved? {
            emit(&format!("\n{}", render::text::plan(&changed, dir, style)))?;
            let ids: Vec<String> = changed.groups.iter().map(|g| g.id.to_string()).collect();
            bail!(
                "the portal changed while waiting for confirmation (group(s) {}); nothing was sent. The current plan for them is above: review it and run apply again",
                ids.join(", ")
            );
        }
    }
    let total = apply::changes(&plan).len();
    let progress = Progress::start("applying", total);
    let stop = provider::CancellationToken::new();
    // An interrupt already pending stops the run before the first write, not after it: the
    // watcher task may not be polled before `apply` sends.
    if futures_util::FutureExt::now_or_never(signals.next()).is_some() {
        interrupted_while_writing(&stop, args.portal.timeout);
    }
    let watcher = tokio::spawn(watch_interrupts(signals, stop.clone(), args.portal.timeout));
    let report = apply::apply(&plan, &conn.provider, &|n| progress.inc(n), &stop).await;
    let interrupted = stop.is_cancelled();
    progress.finish();
    // The watcher stays until the report is out, so a second interrupt still exits at once.
    emit(&format!("\n{}", render::text::report(&report, dir, style)))?;
    watcher.abort();
    if interrupted {
        eprintln!(
            "roster: apply was interrupted: {} change(s) not started; run `roster plan` to see what remains",
            report.not_started()
        );
        return Ok(Exit::Interrupted);
    }
    Ok(if report.all_done() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// While apply writes: the first SIGINT/SIGTERM stops new requests (the report still comes);
/// the second exits at once.
async fn watch_interrupts(
    mut signals: Signals,
    stop: provider::CancellationToken,
    timeout: std::time::Duration,
) {
    if !stop.is_cancelled() {
        signals.next().await;
        interrupted_while_writing(&stop, timeout);
    }
    // `timeout(1)` and some CI runners send one signal to the process and again to its group:
    // a second signal within a second is the same interrupt, not a second one.
    let first = std::time::Instant::now();
    loop {
        signals.next().await;
        if first.elapsed() >= SAME_INTERRUPT {
            break;
        }
    }
    eprintln!(
        "roster: interrupted again: exiting now without a report; run `roster plan` to see what the portal holds"
    );
    std::process::exit(130);
}

/// Signals closer together than this count as one interrupt.
const SAME_INTERRUPT: std::time::Duration = std::time::Duration::from_secs(1);

/// The first interrupt while writing: say what happens next and stop new requests.
fn interrupted_while_writing(stop: &provider::CancellationToken, timeout: std::time::Duration) {
    eprintln!(
        "\nroster: interrupted: no new changes will be sent; waiting for the requests in flight and reading the changed groups again (at most {} s), then reporting. Interrupt again (a second later) to exit at once.",
        2 * timeout.as_secs()
    );
    stop.cancel();
}

/// Print the limits a plan breaks on stderr. True when the run must stop; with
/// `--allow-mass-removal` they are shown as a warning and the run goes on.
fn refuse_mass_removal(breaches: &[plan::LimitBreach], allowed: bool, command: &str) -> bool {
    if breaches.is_empty() {
        return false;
    }
    // A file that empties 2,000 groups should not print 2,000 lines: every breach of the first
    // groups, a count of the other groups, and the run-wide limit, which says the most.
    const SHOWN_GROUPS: usize = 10;
    let group_of = |b: &plan::LimitBreach| match &b.scope {
        plan::BreachScope::Group { id, .. } => Some(*id),
        plan::BreachScope::Run => None,
    };
    let groups: std::collections::BTreeSet<model::GroupId> =
        breaches.iter().filter_map(group_of).collect();
    let shown: std::collections::BTreeSet<model::GroupId> =
        groups.iter().take(SHOWN_GROUPS).copied().collect();
    let (listed, run): (Vec<_>, Vec<_>) = breaches
        .iter()
        .filter(|b| group_of(b).is_none_or(|g| shown.contains(&g)))
        .cloned()
        .partition(|b| group_of(b).is_some());
    let mut text = render::text::limit_breaches(&listed);
    if groups.len() > shown.len() {
        text.push_str(&format!(
            "error: … and {} more group(s) over their limits\n",
            groups.len() - shown.len()
        ));
    }
    text.push_str(&render::text::limit_breaches(&run));
    if allowed {
        eprint!("{}", text.replace("error: ", "warning: "));
        eprintln!(
            "roster: --allow-mass-removal: {command} goes on for this run despite the limits above"
        );
        return false;
    }
    eprint!("{text}");
    eprintln!(
        "roster: {command} refused: the plan removes more than the limits allow ({} group(s) over their limits{}); nothing was changed",
        groups.len(),
        if run.is_empty() {
            ""
        } else {
            ", and the run-wide limit"
        }
    );
    true
}

/// Fetch the groups `plan` changes again and plan them anew. `Some(plan of the groups whose
/// entries differ)` when the portal moved since `plan` was made, `None` when it did not.
async fn recheck(
    desired: &DesiredState,
    plan: &plan::Plan,
    provider: &Provider,
    options: plan::Options,
) -> Result<Option<plan::Plan>> {
    let changed: std::collections::BTreeSet<model::GroupId> = plan
        .groups
        .iter()
        .filter(|g| g.changes().next().is_some())
        .map(|g| g.id)
        .collect();
    let mut affected = desired.clone();
    affected.groups.retain(|id, _| changed.contains(id));
    let current = fetch(provider, &affected)
        .await
        .context("cannot read the portal again after the confirmation")?;
    let now = plan::diff_with(&affected, &current, options);
    let before: std::collections::BTreeMap<_, _> =
        plan.groups.iter().map(|g| (g.id, &g.entries)).collect();
    let moved: Vec<plan::GroupPlan> = now
        .groups
        .into_iter()
        .filter(|g| before.get(&g.id) != Some(&&g.entries))
        .collect();
    Ok((!moved.is_empty()).then_some(plan::Plan { groups: moved }))
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

/// Ask on the terminal (the caller has checked there is one).
fn confirm() -> Result<bool> {
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

/// How an in-process or served sandbox starts: the state-file lock wait comes from
/// `ROSTER_SANDBOX_LOCK_WAIT` (seconds), default 10.
fn sandbox_options() -> Result<sandbox::bitrix24::StartOptions> {
    let mut options = sandbox::bitrix24::StartOptions::default();
    if let Some(v) = std::env::var_os("ROSTER_SANDBOX_LOCK_WAIT") {
        let secs: f64 = v
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| (0.0..=3600.0).contains(s))
            .context("ROSTER_SANDBOX_LOCK_WAIT must be a number of seconds from 0 to 3600")?;
        options.lock_wait = std::time::Duration::from_secs_f64(secs);
    }
    Ok(options)
}

async fn serve(state: &Path, listen: SocketAddr) -> Result<Exit> {
    let sandbox = Sandbox::start_with(state, listen, sandbox_options()?)
        .await
        .with_context(|| format!("cannot start the sandbox on {}", state.display()))?;
    // Listening before the banner: whoever reads it may stop us at once.
    let mut signals = Signals::new()?;
    let url = sandbox
        .webhook_url()
        .unwrap_or_else(|| "(no webhook declared in the state file)".into());
    emit(&format!(
        "roster sandbox: Bitrix24 emulator on http://{addr} with state {}\nwebhook URL: {url}\ncounters: http://{addr}{}\nPress Ctrl-C to stop.\n",
        state.display(),
        sandbox::bitrix24::server::STATS_PATH,
        addr = sandbox.addr(),
    ))?;
    signals.next().await;
    let stats = sandbox.stats();
    sandbox
        .shutdown()
        .await
        .context("cannot shut the sandbox down cleanly")?;
    emit(&format!(
        "roster sandbox: stopped; counters: {}\n",
        serde_json::to_string(&stats).context("cannot encode the counters")?
    ))?;
    Ok(Exit::Success)
}

fn generate(
    out: &Path,
    groups: usize,
    members: usize,
    churn: f64,
    seed: u64,
    force: bool,
) -> Result<Exit> {
    if members < 1 || !(0.0..=1.0).contains(&churn) {
        bail!("--members must be at least 1 and --churn between 0 and 1");
    }
    let existing: Vec<String> = ["portal.yaml", "groups.yaml"]
        .iter()
        .map(|f| out.join(f))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !force && !existing.is_empty() {
        bail!(
            "refusing to overwrite {}; pass --force to replace them",
            existing.join(" and ")
        );
    }
    let params = sandbox::scenario::Params::new(groups, members, churn, seed);
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

/// SIGINT (Ctrl-C) and SIGTERM (a service manager or CI runner), listened for from the moment
/// this is created: until then they keep their default meaning (stop at once).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
