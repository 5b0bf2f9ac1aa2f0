//! roster: declarative Bitrix24 workgroup membership.
//!
//! `run()` is the imperative shell. It sequences load → connect → fetch → plan → render →
//! (confirm → apply → report) and owns every side effect: files, the terminal, the network,
//! the in-process sandbox. The modules it calls are pure (`spec`, `plan`, `render`) or own one
//! kind of I/O (`provider`, `sandbox`).

pub mod apply;
pub mod canonical;
pub mod cli;
mod connect;
mod gitops;
pub mod import;
pub mod loadtest;
pub mod model;
pub mod plan;
pub mod progress;
pub mod provider;
pub mod render;
pub mod resolve;
pub mod rules;
pub mod sandbox;
pub mod saved;
pub mod soak;
pub mod soak_docspace;
pub mod spec;
pub mod structure;

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};

use cli::{ApplyArgs, Cli, ColorChoice, Command, Format, PlanArgs, SandboxCommand};
use connect::{Connection, Target};
use model::DesiredState;
use model::System;
use progress::Progress;
use provider::Provider;
use render::Style;

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
            Command::Import(args) => gitops::import(&args).await,
            Command::Fmt { file, check } => gitops::fmt(&file, check),
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut out = Vec::new();
                clap_complete::generate(shell, &mut cmd, "roster", &mut out);
                io::stdout()
                    .write_all(&out)
                    .context("cannot write to standard output")?;
                Ok(Exit::Success)
            }
            Command::Man { out_dir } => man(out_dir.as_deref()),
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
                        system,
                    },
            } => generate(&out, groups, members, churn, seed, force, system),
        }
    })
}

/// `roster man`: the page on stdout, or every page (roster.1 and roster-COMMAND.1 for each
/// command, nested ones too) into a directory.
fn man(out_dir: Option<&Path>) -> Result<Exit> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = out_dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .context("cannot render the manual page")?;
        emit(&String::from_utf8_lossy(&out))?;
        return Ok(Exit::Success);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    eprintln!(
        "roster: {} manual page(s) written to {}: {}",
        pages.len(),
        dir.display(),
        pages.join(", ")
    );
    Ok(Exit::Success)
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
    let bytes = read_capped(file)?;
    parse_loaded(file, &bytes)
}

/// The first `spec::MAX_FILE_BYTES + 1` bytes of a file (more is refused by the parser).
fn read_capped(file: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let name = spec::escape(&file.display().to_string());
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            f.take(spec::MAX_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .with_context(|| format!("cannot read {name}"))?;
    Ok(bytes)
}

/// `load` of bytes already read.
fn parse_loaded(file: &Path, bytes: &[u8]) -> Result<Option<spec::Spec>> {
    let name = spec::escape(&file.display().to_string());
    match spec::parse_bytes(&file.display().to_string(), bytes) {
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
    /// The plan's removals and the current memberships of its groups (`plan::run_totals`), for
    /// the run-wide limit over several portals.
    pub(crate) totals: (usize, usize),
    /// The declared groups as read, which the plan was made from (`--diff`, saved plans).
    pub(crate) current: model::CurrentState,
}

/// Resolve the file's people and groups, read the groups, plan, and check limits and
/// permissions. Sends no write. The load test measures exactly this.
pub(crate) async fn prepare(
    spec: &spec::Spec,
    provider: &Provider,
    options: plan::Options,
) -> Result<Prepared> {
    prepare_only(spec, provider, options, None).await
}

/// `prepare`, reading and planning only the groups in `only` (the groups a saved plan
/// changes), when given: the file is still resolved whole.
pub(crate) async fn prepare_only(
    spec: &spec::Spec,
    provider: &Provider,
    options: plan::Options,
    only: Option<&std::collections::BTreeSet<model::GroupId>>,
) -> Result<Prepared> {
    let lookups = provider
        .lookup(&resolve::wanted(spec))
        .await
        .context("cannot look up the file's people and groups on the portal")?;
    let mut resolved = resolve::resolve(spec, &lookups);
    resolved.directory.system = provider.system();
    if let Some(only) = only {
        resolved.desired.groups.retain(|id, _| only.contains(id));
    }
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
    let totals = plan::run_totals(&current, &plan);
    let mut portal_warnings = provider.read_warnings();
    let access = match lookups.caller {
        Some(caller) => plan::access::check_for(provider.system(), &plan, &current, &caller),
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
        current,
        totals,
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

/// The planner's options for a system: a DocSpace group's manager is changed whenever the
/// file names another (the manager has no rights of its own, unlike a Bitrix24 owner, whose
/// transfer needs `--allow-owner-change`).
pub(crate) fn options_for(system: System, allow_owner_change: bool) -> plan::Options {
    plan::Options {
        allow_owner_change: allow_owner_change || system == System::DocSpace,
    }
}

/// Load the file and find every portal's address: all before anything is contacted.
/// `groups` are the `--group` selectors.
fn load_targets_from(
    file: &Path,
    bytes: &[u8],
    args: &cli::PortalArgs,
    groups: &[String],
) -> Result<Option<Vec<(Target, String)>>> {
    let Some(mut spec) = parse_loaded(file, bytes)? else {
        return Ok(None);
    };
    if let Err(unmatched) = spec.retain_groups(groups) {
        for sel in &unmatched {
            eprintln!(
                "error: --group {}: {} declares no group with that ID or name (as the file writes them: a group given by `name:` only is selected by its name){}",
                spec::escape(sel),
                spec::escape(&file.display().to_string()),
                if spec.portals.is_empty() {
                    ""
                } else {
                    " (PORTAL/ID or PORTAL/NAME picks one portal's)"
                }
            );
        }
        eprintln!("roster: nothing was sent to any portal");
        return Ok(None);
    }
    let declared: Vec<String> = spec.portals.iter().map(|p| p.name.clone()).collect();
    let targets = connect::targets(spec);
    let addresses = connect::addresses(&targets, args, &declared)?;
    Ok(Some(targets.into_iter().zip(addresses).collect()))
}

/// One portal's part of a run: where, what was planned, and the connection while open.
struct Section<'a> {
    target: &'a Target,
    prepared: Prepared,
}

/// The run-wide removal limit over several portals: each portal's own run-wide breach is
/// replaced by one over the sum of their removals and memberships ("the whole run", as the file
/// format says). One portal: its own check stands. Returns the run's breach, if any.
fn whole_run_limit(
    sections: &mut [Section],
    desired_limits: &DesiredState,
) -> Vec<plan::LimitBreach> {
    if sections.len() < 2 {
        return Vec::new();
    }
    let (mut removals, mut current) = (0, 0);
    for s in sections.iter_mut() {
        s.prepared
            .breaches
            .retain(|b| !matches!(b.scope, plan::BreachScope::Run));
        removals += s.prepared.totals.0;
        current += s.prepared.totals.1;
    }
    plan::run_breach(desired_limits, removals, current)
        .into_iter()
        .collect()
}

/// The file's top-level limits (every part of a split file has them), as a `DesiredState`
/// whose `limits` the run-wide check reads.
fn sections_limits(targets: &[(Target, String)]) -> DesiredState {
    sections_limits_of(targets.iter().map(|(t, _)| t))
}

fn sections_limits_of<'a>(mut targets: impl Iterator<Item = &'a Target>) -> DesiredState {
    let mut d = DesiredState::default();
    if let Some(t) = targets.next() {
        d.limits = t.spec.limits;
    }
    d
}

/// Whether the run has one portal shown as before (a plain file): no headers, the JSON
/// document as it always was.
fn plain(sections: &[Section]) -> bool {
    sections.len() == 1 && sections[0].target.portal.is_none()
}

/// A section's heading in text output: `Portal "docs" (ONLYOFFICE DocSpace):`.
fn heading(t: &Target) -> Option<String> {
    t.portal
        .as_ref()
        .map(|p| format!("Portal \"{}\" ({}):\n", p.name, p.system.title()))
}

/// Every section's plan as text, then the total when there are several portals.
fn plans_text(sections: &[Section], style: Style) -> String {
    let mut out = String::new();
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if let Some(h) = heading(s.target) {
            out.push_str(&style.paint(render::text::BOLD, &h));
        }
        out.push_str(&render::text::plan(
            &s.prepared.plan,
            &s.prepared.resolved.directory,
            style,
        ));
    }
    if sections.len() > 1 {
        let mut total = plan::Summary::default();
        for s in sections {
            total += s.prepared.plan.summary();
        }
        let line =
            render::text::summary_line(&total).replace("owner change", "owner/manager change");
        out.push_str(&format!(
            "\n{}\n",
            style.paint(
                render::text::BOLD,
                &format!("All {} portals: {line}", sections.len())
            )
        ));
    }
    out
}

/// The JSON plan: the document of `render::json` for a plain file; with `portals:`, one such
/// document per portal under `portals`, with the run's `has_changes`.
fn plans_json(sections: &[Section], run: &[plan::LimitBreach]) -> Result<String> {
    let document = |s: &Section| {
        let p = &s.prepared;
        render::json::document(
            &p.plan,
            &p.resolved.directory,
            &render::json::Extras {
                limit_breaches: Some(&p.breaches),
                errors: Some(&p.resolved.errors),
                warnings: Some(&p.resolved.warnings),
                access_problems: Some(&p.access),
                portal_warnings: Some(&p.portal_warnings),
            },
        )
    };
    if plain(sections) {
        return Ok(document(&sections[0]));
    }
    let mut portals = Vec::new();
    for s in sections {
        let doc: serde_json::Value =
            serde_json::from_str(&document(s)).context("cannot encode the plan")?;
        let p = s.target.portal.as_ref();
        portals.push(serde_json::json!({
            "name": p.map(|p| p.name.as_str()),
            "system": s.target.system().key(),
            "plan": doc,
        }));
    }
    let has_changes = sections
        .iter()
        .any(|s| s.prepared.plan.summary().has_changes());
    // The run-wide limit over every portal (each portal's `limit_breaches` has its groups').
    let run_breaches = render::json::breaches(run);
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "format_version": render::json::FORMAT_VERSION,
        "has_changes": has_changes,
        "portals": portals,
        "limit_breaches": run_breaches,
    }))
    .context("cannot encode the plan")?;
    text.push('\n');
    Ok(text)
}

/// Resolve errors, access problems and limits of every section on stderr (`level` is
/// `warning` in plan, `error` in apply). Returns (unresolved, access refused, limits refused).
fn report_checks(
    file: &Path,
    sections: &[Section],
    run: &[plan::LimitBreach],
    allow_mass_removal: bool,
    command: &str,
) -> (bool, bool, bool) {
    let (mut unresolved, mut access, mut limits) = (false, false, false);
    let level = if command == "plan" {
        "warning"
    } else {
        "error"
    };
    for s in sections {
        let p = &s.prepared;
        let prefix = match &s.target.portal {
            Some(portal) if sections.len() > 1 => format!("portal \"{}\": ", portal.name),
            _ => String::new(),
        };
        unresolved |= report_resolution(file, &p.resolved);
        if !p.access.is_empty() {
            access = true;
            eprint!(
                "{}",
                render::text::access_problems(&p.access, level)
                    .replace(&format!("{level}: "), &format!("{level}: {prefix}"))
            );
        }
        limits |= refuse_mass_removal(&p.breaches, allow_mass_removal, command);
    }
    if !run.is_empty() {
        eprint!("all portals: ");
        limits |= refuse_mass_removal(run, allow_mass_removal, command);
    }
    (unresolved, access, limits)
}

async fn plan(args: PlanArgs, style: Style) -> Result<Exit> {
    if args.diff && args.format == Format::Json {
        bail!("--diff is for the text and markdown formats; the JSON plan has every entry already");
    }
    let bytes = read_capped(&args.file)?;
    let Some(targets) = load_targets_from(&args.file, &bytes, &args.portal, &args.groups)? else {
        return Ok(Exit::Failure);
    };
    let mut sections = Vec::new();
    for (target, address) in &targets {
        let conn = Connection::open(target, address, &args.portal).await?;
        let options = options_for(target.system(), args.allow_owner_change);
        let prepared = prepare(&target.spec, &conn.provider, options).await;
        conn.close().await?;
        let prepared = prepared.with_context(|| target.label())?;
        sections.push(Section { target, prepared });
    }
    let run = whole_run_limit(&mut sections, &sections_limits(&targets));
    match args.format {
        Format::Text => {
            let mut text = gitops::scope_line(&args.groups);
            text.push_str(&plans_text(&sections, style));
            if args.diff {
                text.push_str(&gitops::diffs_text(&sections, style));
            }
            emit(&text)?;
        }
        Format::Json => emit(&gitops::with_scope(
            plans_json(&sections, &run)?,
            &args.groups,
        )?)?,
        Format::Markdown => emit(&gitops::plans_markdown(
            &sections,
            &run,
            &args.groups,
            args.diff,
        ))?,
    }
    let (unresolved, access, refused) =
        report_checks(&args.file, &sections, &run, args.allow_mass_removal, "plan");
    if let Some(out) = &args.out {
        gitops::save(
            out,
            &args,
            &bytes,
            &sections,
            &targets,
            !(unresolved || access || refused),
        )?;
    }
    if access {
        eprintln!(
            "roster: apply would refuse this plan before sending anything: the portal does not let the run's user make the changes above"
        );
    }
    // `--out` asked for a plan to apply: one that apply would refuse fails the run.
    if unresolved || refused || (access && args.out.is_some()) {
        return Ok(Exit::Failure);
    }
    let changes = sections
        .iter()
        .any(|s| s.prepared.plan.summary().has_changes());
    Ok(if args.detailed_exitcode && changes {
        Exit::Changes
    } else {
        Exit::Success
    })
}

async fn apply(args: ApplyArgs, style: Style) -> Result<Exit> {
    let bytes = read_capped(&args.file)?;
    if saved::looks_saved(&String::from_utf8_lossy(&bytes[..bytes.len().min(4096)])) {
        return gitops::apply_saved(&args, &bytes, style).await;
    }
    let Some(targets) = load_targets_from(&args.file, &bytes, &args.portal, &args.groups)? else {
        return Ok(Exit::Failure);
    };
    let mut conns = Vec::new();
    for (target, address) in targets {
        match Connection::open(&target, &address, &args.portal).await {
            Ok(conn) => conns.push((target, conn)),
            Err(e) => {
                for (_, c) in conns {
                    c.close().await?;
                }
                return Err(e);
            }
        }
    }
    // From here on an interrupt never kills apply mid-way: while reading or at the prompt it
    // ends the run with nothing sent; while writing it stops new writes and still reports.
    let signals = Signals::new()?;
    let result = apply_connected(&args, &conns, style, signals).await;
    for (_, c) in conns {
        c.close().await?;
    }
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
    conns: &[(Target, Connection)],
    style: Style,
    mut signals: Signals,
) -> Result<Exit> {
    let mut sections = Vec::new();
    for (target, conn) in conns {
        let options = options_for(target.system(), args.allow_owner_change);
        let Step::Done(prepared) =
            unless_interrupted(&mut signals, prepare(&target.spec, &conn.provider, options)).await
        else {
            return interrupted_before_writing("while reading the portal");
        };
        let prepared = prepared.with_context(|| target.label())?;
        sections.push(Section { target, prepared });
    }
    let limits = sections_limits_of(conns.iter().map(|(t, _)| t));
    let run = whole_run_limit(&mut sections, &limits);
    show_plan(
        &format!(
            "{}{}",
            gitops::scope_line(&args.groups),
            plans_text(&sections, style)
        ),
        args.format,
    )?;
    // Everything below is checked on every portal's plan before anything is sent anywhere.
    let (unresolved, access, refused) = report_checks(
        &args.file,
        &sections,
        &run,
        args.allow_mass_removal,
        "apply",
    );
    if unresolved {
        eprintln!(
            "roster: apply refused: the file has references the portal does not resolve (above); nothing was sent"
        );
        return Ok(Exit::Failure);
    }
    if access {
        eprintln!(
            "roster: apply refused: the portal does not let the run's user make the changes above; nothing was sent"
        );
        return Ok(Exit::Failure);
    }
    if refused {
        return Ok(Exit::Failure);
    }
    let changes = sections
        .iter()
        .any(|s| s.prepared.plan.summary().has_changes());
    // Nothing to do: done (the JSON report still comes, with nothing in it).
    if !changes && args.format == cli::ReportFormat::Text {
        return Ok(Exit::Success);
    }
    if changes && !args.auto_approve {
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
        let mut moved_any = Vec::new();
        for (s, (_, conn)) in sections.iter().zip(conns) {
            let options = options_for(s.target.system(), args.allow_owner_change);
            let Step::Done(moved) = unless_interrupted(
                &mut signals,
                recheck(
                    &s.prepared.resolved.desired,
                    &s.prepared.plan,
                    &conn.provider,
                    options,
                ),
            )
            .await
            else {
                return interrupted_before_writing("while reading the portal again");
            };
            if let Some(changed) = moved? {
                let dir = &s.prepared.resolved.directory;
                let head = heading(s.target).unwrap_or_default();
                show_plan(
                    &format!("\n{head}{}", render::text::plan(&changed, dir, style)),
                    args.format,
                )?;
                moved_any.extend(changed.groups.iter().map(|g| g.id.to_string()));
            }
        }
        if !moved_any.is_empty() {
            bail!(
                "the portal changed while waiting for confirmation (group(s) {}); nothing was sent. The current plan for them is above: review it and run apply again",
                moved_any.join(", ")
            );
        }
    }
    let runs: Vec<Run> = sections
        .iter()
        .zip(conns)
        .map(|(s, (_, conn))| Run {
            target: s.target,
            plan: &s.prepared.plan,
            dir: &s.prepared.resolved.directory,
            provider: &conn.provider,
        })
        .collect();
    carry_out(&runs, signals, args.portal.timeout, style, args.format).await
}

/// The plan before apply writes: on stdout, or on stderr when stdout is for the JSON report.
fn show_plan(text: &str, format: cli::ReportFormat) -> Result<()> {
    match format {
        cli::ReportFormat::Text => emit(text),
        cli::ReportFormat::Json => {
            eprint!("{text}");
            Ok(())
        }
    }
}

/// One portal's part of the writing: its plan, who is who, and where to send it.
struct Run<'a> {
    target: &'a Target,
    plan: &'a plan::Plan,
    dir: &'a model::Directory,
    provider: &'a Provider,
}

/// Send every run's changes, portal after portal, and report each change's outcome (text, or
/// the JSON report on stdout). An interrupt stops new writes and still reports.
async fn carry_out(
    runs: &[Run<'_>],
    mut signals: Signals,
    timeout: std::time::Duration,
    style: Style,
    format: cli::ReportFormat,
) -> Result<Exit> {
    let total: usize = runs.iter().map(|r| apply::changes(r.plan).len()).sum();
    let progress = Progress::start("applying", total);
    let stop = provider::CancellationToken::new();
    // An interrupt already pending stops the run before the first write, not after it: the
    // watcher task may not be polled before `apply` sends.
    if futures_util::FutureExt::now_or_never(signals.next()).is_some() {
        interrupted_while_writing(&stop, timeout);
    }
    let watcher = tokio::spawn(watch_interrupts(signals, stop.clone(), timeout));
    // One portal after the other: a report each, and an interrupt stops the rest.
    let mut reports = Vec::new();
    for r in runs {
        let report = apply::apply(r.plan, r.provider, &|n| progress.inc(n), &stop).await;
        reports.push(report);
    }
    let interrupted = stop.is_cancelled();
    progress.finish();
    // The watcher stays until the report is out, so a second interrupt still exits at once.
    match format {
        cli::ReportFormat::Text => {
            let mut text = String::new();
            for (r, report) in runs.iter().zip(&reports) {
                text.push('\n');
                if let Some(h) = heading(r.target) {
                    text.push_str(&style.paint(render::text::BOLD, &h));
                }
                text.push_str(&render::text::report(report, r.dir, style));
            }
            emit(&text)?;
        }
        cli::ReportFormat::Json => emit(&reports_json(runs, &reports)?)?,
    }
    watcher.abort();
    if interrupted {
        let not_started: usize = reports.iter().map(apply::Report::not_started).sum();
        eprintln!(
            "roster: apply was interrupted: {not_started} change(s) not started; run `roster plan` to see what remains"
        );
        return Ok(Exit::Interrupted);
    }
    Ok(if reports.iter().all(apply::Report::all_done) {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// The JSON apply report: `render::json::report_document` for a plain file; with `portals:`,
/// one per portal under `portals`.
fn reports_json(runs: &[Run<'_>], reports: &[apply::Report]) -> Result<String> {
    if runs.len() == 1 && runs[0].target.portal.is_none() {
        return Ok(render::json::report_document(&reports[0], runs[0].dir));
    }
    let mut portals = Vec::new();
    for (r, report) in runs.iter().zip(reports) {
        let doc: serde_json::Value =
            serde_json::from_str(&render::json::report_document(report, r.dir))
                .context("cannot encode the report")?;
        portals.push(serde_json::json!({
            "name": r.target.portal.as_ref().map(|p| p.name.as_str()),
            "system": r.target.system().key(),
            "report": doc,
        }));
    }
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "format_version": render::json::FORMAT_VERSION,
        "kind": "apply_report",
        "all_done": reports.iter().all(apply::Report::all_done),
        "portals": portals,
    }))
    .context("cannot encode the report")?;
    text.push('\n');
    Ok(text)
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

async fn serve(state: &Path, listen: SocketAddr) -> Result<Exit> {
    let started = || format!("cannot start the sandbox on {}", state.display());
    if connect::is_docspace_sandbox(state)? {
        let options = sandbox::docspace::StartOptions {
            lock_wait: connect::sandbox_options()?.lock_wait,
            ..sandbox::docspace::StartOptions::default()
        };
        let sandbox = sandbox::docspace::Sandbox::start_with(state, listen, options)
            .await
            .with_context(started)?;
        // The key is the sandbox's own (from its state file), not a real portal's: printing it
        // is what lets a user call the sandbox with curl or the DocSpace samples.
        let key = sandbox
            .api_key()
            .unwrap_or_else(|| "(no API key declared in the state file)".into());
        let banner = format!(
            "roster sandbox: ONLYOFFICE DocSpace emulator on {base} with state {}\nAPI base: {base}/api/2.0/  (Authorization: Bearer {key})\ncounters: {base}{}\nPress Ctrl-C to stop.\n",
            state.display(),
            sandbox::docspace::STATS_PATH,
            base = sandbox.base_url(),
        );
        serve_until_interrupted(&banner).await?;
        let counters = serde_json::to_string(&sandbox.stats());
        sandbox
            .shutdown()
            .await
            .context("cannot shut the sandbox down cleanly")?;
        return stopped(counters);
    }
    let sandbox =
        sandbox::bitrix24::Sandbox::start_with(state, listen, connect::sandbox_options()?)
            .await
            .with_context(started)?;
    let url = sandbox
        .webhook_url()
        .unwrap_or_else(|| "(no webhook declared in the state file)".into());
    let banner = format!(
        "roster sandbox: Bitrix24 emulator on http://{addr} with state {}\nwebhook URL: {url}\ncounters: http://{addr}{}\nPress Ctrl-C to stop.\n",
        state.display(),
        sandbox::bitrix24::server::STATS_PATH,
        addr = sandbox.addr(),
    );
    serve_until_interrupted(&banner).await?;
    let counters = serde_json::to_string(&sandbox.stats());
    sandbox
        .shutdown()
        .await
        .context("cannot shut the sandbox down cleanly")?;
    stopped(counters)
}

/// Print the banner once the sandbox listens (whoever reads it may stop us at once) and wait
/// for SIGINT or SIGTERM.
async fn serve_until_interrupted(banner: &str) -> Result<()> {
    let mut signals = Signals::new()?;
    emit(banner)?;
    signals.next().await;
    Ok(())
}

/// The last line of `sandbox serve`: the counters.
fn stopped(counters: serde_json::Result<String>) -> Result<Exit> {
    emit(&format!(
        "roster sandbox: stopped; counters: {}\n",
        counters.context("cannot encode the counters")?
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
    system: cli::SystemArg,
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
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (desired, memberships) = match system {
        cli::SystemArg::Bitrix24 => {
            let scenario = sandbox::scenario::generate(&params);
            sandbox::bitrix24::state::save(&out.join("portal.yaml"), &scenario.state)?;
            (scenario.desired_yaml, scenario.memberships)
        }
        cli::SystemArg::Docspace => {
            let scenario = sandbox::scenario::generate_docspace(&params);
            sandbox::docspace::state::save(&out.join("portal.yaml"), &scenario.state)?;
            (scenario.desired_yaml, scenario.memberships)
        }
    };
    std::fs::write(out.join("groups.yaml"), &desired)
        .with_context(|| format!("cannot write {}", out.join("groups.yaml").display()))?;
    emit(&format!(
        "wrote {0}/portal.yaml ({groups} groups, {1} memberships) and {0}/groups.yaml
try: roster plan {0}/groups.yaml --portal sandbox:{0}/portal.yaml
",
        out.display(),
        memberships
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
