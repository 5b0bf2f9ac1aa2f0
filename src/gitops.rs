//! The shell of the GitOps loop: `plan --group/--diff/--format markdown/--out` and
//! `apply PLAN_FILE`. The decisions are pure (`crate::saved`, `crate::render`); this module
//! reads and writes the files and the portals and says what happened.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::{ApplyArgs, PlanArgs};
use crate::connect::{self, Connection, Target};
use crate::model::{self, Limits};
use crate::render::{self, Style};
use crate::saved;
use crate::spec;
use crate::{
    Exit, Run, Section, Signals, Step, carry_out, heading, interrupted_before_writing, show_plan,
    unless_interrupted,
};

/// The plan header of a run limited by `--group`: which groups it covers.
pub(crate) fn scope_line(groups: &[String]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = groups.iter().map(|g| spec::escape(g)).collect();
    format!(
        "Only the groups given by --group: {}. Other groups are not read or changed.\n\n",
        shown.join(", ")
    )
}

/// The JSON plan with `only_groups` (the `--group` selectors) when the run was limited.
pub(crate) fn with_scope(document: String, groups: &[String]) -> Result<String> {
    if groups.is_empty() {
        return Ok(document);
    }
    let list = serde_json::to_string(groups).context("cannot encode the plan")?;
    // Every plan document is a pretty-printed object: the field goes first.
    match document.strip_prefix("{\n") {
        Some(rest) => Ok(format!("{{\n  \"only_groups\": {list},\n{rest}")),
        None => bail!("the JSON plan is not an object"),
    }
}

/// `--diff`: a unified diff per changed group (current → planned membership as YAML), after
/// the plan; a heading per portal when there are several.
pub(crate) fn diffs_text(sections: &[Section], style: Style) -> String {
    let mut out = String::new();
    for s in sections {
        let p = &s.prepared;
        let diff = render::diff::group_diff(&p.current, &p.plan, &p.resolved.directory, style);
        if diff.is_empty() {
            continue;
        }
        out.push('\n');
        if sections.len() > 1
            && let Some(h) = heading(s.target)
        {
            out.push_str(&style.paint(render::text::BOLD, &h));
        }
        out.push_str(&diff);
    }
    out
}

/// `--format markdown`: the pull-request comment, with the `--group` scope, what keeps the
/// plan from being applied (the file's unresolved references, access problems) and its
/// warnings, and, with `--diff`, the diffs folded at its end — all within the size cap.
pub(crate) fn plans_markdown(
    sections: &[Section],
    run: &[crate::plan::LimitBreach],
    groups: &[String],
    diff: bool,
) -> String {
    use render::markdown::{MdOptions, MdSection, escape_md};
    let md: Vec<MdSection> = sections
        .iter()
        .map(|s| MdSection {
            portal: s
                .target
                .portal
                .as_ref()
                .map(|p| (p.name.as_str(), p.system)),
            plan: &s.prepared.plan,
            dir: &s.prepared.resolved.directory,
            breaches: &s.prepared.breaches,
        })
        .collect();
    // What goes before the plan: the scope and the problems, each bounded.
    const SHOWN: usize = 20;
    let mut head = String::new();
    if !groups.is_empty() {
        let shown: Vec<String> = groups.iter().take(SHOWN).map(|g| escape_md(g)).collect();
        let more = groups.len().saturating_sub(SHOWN);
        head.push_str(&format!(
            "Only the groups given by `--group`: {}{}.\n\n",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    for s in sections {
        let p = &s.prepared;
        let prefix = match &s.target.portal {
            Some(portal) if sections.len() > 1 => format!("portal \"{}\": ", portal.name),
            _ => String::new(),
        };
        problems.extend(p.resolved.errors.iter().map(|d| format!("{prefix}{d}")));
        if p.resolved.errors_omitted > 0 {
            problems.push(format!(
                "{prefix}… and {} more problem(s) in the file",
                p.resolved.errors_omitted
            ));
        }
        problems.extend(
            render::text::access_problems(&p.access, "x")
                .lines()
                .map(|l| format!("{prefix}{}", l.trim_start_matches("x: "))),
        );
        warnings.extend(p.resolved.warnings.iter().map(|d| format!("{prefix}{d}")));
        warnings.extend(p.portal_warnings.iter().map(|w| format!("{prefix}{w}")));
    }
    let block = |kind: &str, title: &str, lines: &[String]| {
        let mut out = format!("> [!{kind}]\n> {title}\n");
        for l in lines.iter().take(SHOWN) {
            out.push_str(&format!("> - {}\n", escape_md(l)));
        }
        if lines.len() > SHOWN {
            out.push_str(&format!(
                "> - … and {} more (see the job log)\n",
                lines.len() - SHOWN
            ));
        }
        out.push('\n');
        out
    };
    if !problems.is_empty() {
        head.push_str(&block(
            "CAUTION",
            "apply would refuse this plan: the groups with these problems are left out of it.",
            &problems,
        ));
    }
    if !warnings.is_empty() {
        head.push_str(&block("NOTE", "Warnings:", &warnings));
    }
    let diffs = if diff {
        diffs_text(sections, Style { color: false })
    } else {
        String::new()
    };
    // Inside a fence no Markdown applies; a fence longer than any backtick run in the diff
    // cannot be closed by it.
    let fence = "`".repeat(longest_run(&diffs, '`').max(2) + 1);
    let diff_block = format!(
        "\n<details><summary>Membership diff</summary>\n\n{fence}diff\n{}{fence}\n\n</details>\n",
        diffs.trim_start_matches('\n')
    );
    const DIFF_CUT: &str = "\nThe membership diff is too long for this comment; see the job log.\n";
    let cap = MdOptions::default().max_chars;
    let reserve = head.chars().count() + if diff { DIFF_CUT.chars().count() } else { 0 };
    let opts = MdOptions {
        max_chars: cap.saturating_sub(reserve),
        ..MdOptions::default()
    };
    let mut text = render::markdown::plans(&md, run, &opts);
    // After the marker and the heading, before the summary.
    match text.find("\n\n") {
        Some(i) => text.insert_str(i + 2, &head),
        None => text.push_str(&head),
    }
    if diff {
        if text.chars().count() + diff_block.chars().count() <= cap {
            text.push_str(&diff_block);
        } else {
            text.push_str(DIFF_CUT);
        }
    }
    text
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// Which portal an address is, as a plan file records it: a URL's host, or a sandbox's
/// state file by its absolute path.
fn identity(address: &str) -> Result<String> {
    match address.strip_prefix("sandbox:") {
        Some(path) => {
            let abs = std::fs::canonicalize(path)
                .with_context(|| format!("cannot find the sandbox state {path}"))?;
            Ok(saved::portal_identity(
                address,
                Some(&abs.display().to_string()),
            ))
        }
        None => Ok(saved::portal_identity(address, None)),
    }
}

/// `plan --out`: write the saved plan when apply would accept it (`ok`); otherwise write
/// nothing, and remove a plan file already at that path so a stale one cannot be applied.
pub(crate) fn save(
    out: &Path,
    args: &PlanArgs,
    bytes: &[u8],
    sections: &[Section],
    targets: &[(Target, String)],
    ok: bool,
) -> Result<()> {
    let shown = spec::escape(&out.display().to_string());
    if !ok {
        let stale = std::fs::read(out)
            .is_ok_and(|b| saved::looks_saved(&String::from_utf8_lossy(&b[..b.len().min(4096)])));
        if stale {
            std::fs::remove_file(out)
                .with_context(|| format!("cannot remove the old plan file {shown}"))?;
        }
        eprintln!(
            "roster: no plan written to {shown}{}: apply would refuse this plan (above)",
            if stale {
                " (the old one there was removed)"
            } else {
                ""
            }
        );
        return Ok(());
    }
    // Only a plan file is overwritten: `--out groups.yaml` must not replace the desired state.
    if let Ok(b) = std::fs::read(out)
        && !saved::looks_saved(&String::from_utf8_lossy(&b[..b.len().min(4096)]))
    {
        bail!(
            "{shown} exists and is not a roster plan file: give --out a new file (or a plan file to replace)"
        );
    }
    let mut parts = Vec::new();
    for s in sections {
        let address = targets
            .iter()
            .find(|(t, _)| std::ptr::eq(t, s.target))
            .map(|(_, a)| a.as_str())
            .context("a portal without an address")?;
        let p = s.target.portal.as_ref();
        parts.push(saved::Part {
            name: p.map(|p| p.name.as_str()),
            system: s.target.system(),
            portal: identity(address)?,
            url_env: p.map(|p| p.url_env.as_str()),
            key_env: p.and_then(|p| p.key_env.as_deref()),
            plan: &s.prepared.plan,
            current: &s.prepared.current,
            dir: &s.prepared.resolved.directory,
        });
    }
    let plan = saved::build(
        &args.file.display().to_string(),
        bytes,
        &args.groups,
        saved::Flags {
            allow_owner_change: args.allow_owner_change,
            allow_mass_removal: args.allow_mass_removal,
        },
        &parts,
    );
    let mut text = serde_json::to_string_pretty(&plan).context("cannot encode the plan")?;
    text.push('\n');
    write_whole(out, &text)?;
    let changes: usize = sections
        .iter()
        .map(|s| crate::apply::changes(&s.prepared.plan).len())
        .sum();
    let groups: usize = plan.portals.iter().map(|p| p.groups.len()).sum();
    eprintln!(
        "roster: plan saved to {shown}: {changes} change(s) in {groups} group(s); carry it out with `roster apply {shown}`"
    );
    Ok(())
}

/// `apply PLAN_FILE`: check the plan file, its desired-state file and the portals it was made
/// for; plan the groups it changes again from the file and the portal as they are now, and
/// refuse unless that gives exactly the saved changes (a group moved on the portal: the
/// members named; the plan file edited: said so), with every check `apply FILE` makes
/// (references, permissions, limits); then carry out the saved changes.
pub(crate) async fn apply_saved(args: &ApplyArgs, bytes: &[u8], style: Style) -> Result<Exit> {
    let name = spec::escape(&args.file.display().to_string());
    if !args.groups.is_empty() {
        bail!(
            "--group is for a desired-state file; the plan file {name} applies the groups it was made for (make it with `roster plan FILE --group … --out {name}`)"
        );
    }
    if args.allow_mass_removal || args.allow_owner_change {
        eprintln!(
            "roster: note: --allow-mass-removal and --allow-owner-change were decided when the plan was made; the plan file is applied as it is"
        );
    }
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("{name} is not UTF-8"))?;
    let saved_plan = saved::parse(text).map_err(|e| anyhow!("{name}: {e}"))?;
    let file = Path::new(&saved_plan.file);
    let file_name = spec::escape(&saved_plan.file);
    // The plan is checked against the file it was made from: it must be here, unchanged.
    let now = std::fs::read(file).map_err(|e| {
        anyhow!(
            "{file_name}, the file the plan {name} was made from, cannot be read here ({e}): run apply where plan ran (the path is relative to that directory); nothing was sent"
        )
    })?;
    if saved::sha256_hex(&now) != saved_plan.file_sha256 {
        bail!(
            "{file_name} changed since the plan {name} was made from it: nothing was sent; make the plan again (`roster plan {file_name} --out {name}`)"
        );
    }
    let loaded: Vec<saved::Loaded> = saved_plan
        .portals
        .iter()
        .map(saved::load)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let Some(all) = crate::load_targets_from(file, &now, &args.portal, &saved_plan.only_groups)?
    else {
        return Ok(Exit::Failure);
    };
    // Each portal of the plan once, each one of the file's, at the address the plan was made
    // for.
    for (i, p) in saved_plan.portals.iter().enumerate() {
        if saved_plan.portals[..i].iter().any(|q| q.name == p.name) {
            bail!("the plan {name} lists a portal twice (a damaged plan file); nothing was sent");
        }
    }
    let mut targets = Vec::new();
    for (p, l) in saved_plan.portals.iter().zip(&loaded) {
        let found = all
            .iter()
            .find(|(t, _)| t.portal.as_ref().map(|x| &x.name) == p.name.as_ref())
            .with_context(|| {
                format!(
                    "the plan {name} is for a portal {} does not have any more; nothing was sent",
                    file_name
                )
            })?;
        if found.0.system() != l.system {
            bail!("the plan {name} does not fit {file_name} (another system); nothing was sent");
        }
        let here = identity(&found.1)?;
        if here != p.portal {
            bail!(
                "the plan {name} was made for {} ({}), and {} is {}: refused, nothing was sent",
                spec::escape(&p.portal),
                found.0.label(),
                if args.portal.portal.is_empty() {
                    "the portal given"
                } else {
                    "--portal"
                },
                spec::escape(&here)
            );
        }
        targets.push(found);
    }
    let mut conns = Vec::new();
    for (target, address) in &targets {
        match Connection::open(target, address, &args.portal).await {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                for c in conns {
                    c.close().await?;
                }
                return Err(e);
            }
        }
    }
    let signals = Signals::new()?;
    let targets: Vec<&Target> = targets.iter().map(|(t, _)| t).collect();
    let result = apply_loaded(
        args,
        &name,
        &saved_plan,
        &targets,
        &loaded,
        &conns,
        style,
        signals,
    )
    .await;
    for c in conns {
        c.close().await?;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn apply_loaded(
    args: &ApplyArgs,
    name: &str,
    saved_plan: &saved::SavedPlan,
    targets: &[&Target],
    loaded: &[saved::Loaded],
    conns: &[Connection],
    style: Style,
    mut signals: Signals,
) -> Result<Exit> {
    // Plan again, the plan's groups only, from the file and the portal as they are now.
    let mut sections = Vec::new();
    for ((t, l), conn) in targets.iter().zip(loaded).zip(conns) {
        let options = crate::options_for(t.system(), saved_plan.allow_owner_change);
        let only: std::collections::BTreeSet<model::GroupId> = l.states.keys().copied().collect();
        let Step::Done(prepared) = unless_interrupted(
            &mut signals,
            crate::prepare_only(&t.spec, &conn.provider, options, Some(&only)),
        )
        .await
        else {
            return interrupted_before_writing("while reading the portal again");
        };
        let mut prepared = prepared.with_context(|| t.label())?;
        // The run-wide limit was checked when the plan was made, over every group of the
        // run; here only the plan's groups are read.
        prepared
            .breaches
            .retain(|b| !matches!(b.scope, crate::plan::BreachScope::Run));
        sections.push(Section {
            target: t,
            prepared,
        });
    }
    // How each group moved, and whether the plan's changes are still what the file gives.
    let mut moved = Vec::new();
    let mut edited = Vec::new();
    let mut foreign = Vec::new();
    for (s, l) in sections.iter().zip(loaded) {
        let dir = &s.prepared.resolved.directory;
        let describe = |u: &str| describe_user(dir, u);
        let prefix = match &s.target.portal {
            Some(p) if sections.len() > 1 => format!("portal \"{}\": ", p.name),
            _ => String::new(),
        };
        for saved_group in &l.plan.groups {
            let id = saved_group.id;
            let title = render::text::group_title(
                id,
                dir.groups
                    .get(&id)
                    .or(saved_group.name.as_ref())
                    .map(String::as_str),
            );
            if !s.prepared.resolved.desired.groups.contains_key(&id) {
                // Not a group the file declares as it resolves now (a name now meaning another
                // group, unreadable, or never in the file): nothing of it may be sent.
                foreign.push(format!("{prefix}{title}"));
                continue;
            }
            let now = saved::state_of(s.prepared.current.groups.get(&id));
            let lines = saved::drift(id, &l.states[&id], &now, &describe);
            if !lines.is_empty() {
                moved.push(format!(
                    "{prefix}{title} changed since the plan was made:\n    {}",
                    lines.join("\n    ")
                ));
                continue;
            }
            let again = s.prepared.plan.groups.iter().find(|g| g.id == id);
            let same = again.is_some_and(|g| {
                g.entries == saved_group.entries && g.invite_message == saved_group.invite_message
            });
            if !same {
                edited.push(format!("{prefix}{title}"));
            }
        }
    }
    let run: Vec<crate::plan::LimitBreach> = Vec::new();
    let (unresolved, access, refused) = crate::report_checks(
        Path::new(&saved_plan.file),
        &sections,
        &run,
        saved_plan.allow_mass_removal,
        "apply",
    );
    for m in &moved {
        eprintln!("error: {m}");
    }
    if !edited.is_empty() {
        eprintln!(
            "error: the plan's changes for {} are not what {} and the portal give now, though the group is as it was: the plan file was edited, or made by another version of roster",
            edited.join(", "),
            spec::escape(&saved_plan.file)
        );
    }
    if !foreign.is_empty() {
        eprintln!(
            "error: the plan changes {}, which {} does not declare as it resolves on the portal now (a name that now means another group, a group that cannot be read, or one the file never had)",
            foreign.join(", "),
            spec::escape(&saved_plan.file)
        );
    }
    if unresolved
        || access
        || refused
        || !moved.is_empty()
        || !edited.is_empty()
        || !foreign.is_empty()
    {
        let why = if !moved.is_empty() {
            format!(
                "{} group(s) of the plan {name} changed on the portal since it was made",
                moved.len()
            )
        } else if !edited.is_empty() || !foreign.is_empty() {
            format!("the plan {name} is not the plan of its file")
        } else {
            "the checks above failed".to_owned()
        };
        eprintln!(
            "roster: apply refused: {why}; nothing was sent. Make the plan again and review it."
        );
        return Ok(Exit::Failure);
    }
    // What is sent is the fresh plan of the saved groups (equal to the saved one, checked
    // above), shown with the portal's names as they are now, never the file's.
    let fresh: Vec<crate::plan::Plan> = sections
        .iter()
        .zip(loaded)
        .map(|(s, l)| crate::plan::Plan {
            groups: s
                .prepared
                .plan
                .groups
                .iter()
                .filter(|g| l.states.contains_key(&g.id))
                .cloned()
                .collect(),
        })
        .collect();
    let mut text = String::new();
    for (i, (s, plan)) in sections.iter().zip(&fresh).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        if let Some(h) = heading(s.target) {
            text.push_str(&style.paint(render::text::BOLD, &h));
        }
        text.push_str(&render::text::plan(
            plan,
            &s.prepared.resolved.directory,
            style,
        ));
    }
    show_plan(
        &format!("Applying the saved plan {name}:\n\n{text}"),
        args.format,
    )?;
    let runs: Vec<Run> = sections
        .iter()
        .zip(&fresh)
        .zip(conns)
        .map(|((s, plan), conn)| Run {
            target: s.target,
            plan,
            dir: &s.prepared.resolved.directory,
            provider: &conn.provider,
        })
        .collect();
    carry_out(&runs, signals, args.portal.timeout, style, args.format).await
}

/// A user of a saved plan as messages show them: `bo@example.com (#11)`, or the ID.
fn describe_user(dir: &model::Directory, id: &str) -> String {
    dir.users
        .iter()
        .find(|(u, _)| u.to_string() == id)
        .map_or_else(
            || match dir.system {
                model::System::Bitrix24 => format!("#{id}"),
                model::System::DocSpace => id.to_owned(),
            },
            |(u, _)| render::text::person(dir, *u),
        )
}

/// `roster import`: write a desired-state file of the portal as it is.
pub(crate) async fn import(args: &crate::cli::ImportArgs) -> Result<Exit> {
    use crate::provider::list::{GroupRef, Which};
    let (name, address) = match args.portal.portal.as_slice() {
        [] => (
            None,
            std::env::var("ROSTER_PORTAL")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .context("no portal: give --portal ADDRESS (or set ROSTER_PORTAL for Bitrix24)")?,
        ),
        [one] => match connect::named_address(one) {
            Some((n, a)) => (Some(n.to_owned()), a.to_owned()),
            None => (None, one.clone()),
        },
        _ => bail!("import reads one portal: give --portal once"),
    };
    let system = match address.strip_prefix("sandbox:") {
        Some(path) => {
            if connect::is_docspace_sandbox(Path::new(path))? {
                model::System::DocSpace
            } else {
                model::System::Bitrix24
            }
        }
        None if address.contains("/rest/") => model::System::Bitrix24,
        None => model::System::DocSpace,
    };
    // A DocSpace file always declares its portal (its key's variable follows the name).
    let name = match (name, system) {
        (None, model::System::DocSpace) => Some("docspace".to_owned()),
        (n, _) => n,
    };
    // The portal's entry as the file will declare it, with the spec's defaults for its
    // variables: parsed from the same text `plan` will read.
    let portal = match &name {
        Some(n) => {
            let text = format!(
                "version: 1\nportals:\n  {n}: {{{}: {{}}}}\ngroups: []\n",
                system.key()
            );
            let spec = spec::parse("(import)", &text).map_err(|d| {
                anyhow!(
                    "--portal {n}=…: not a portal name a file can declare: {}",
                    d.shown.first().map(|d| d.message.as_str()).unwrap_or("")
                )
            })?;
            spec.portals.into_iter().next()
        }
        None => None,
    };
    let target = Target {
        spec: spec::Spec {
            file: "(import)".to_owned(),
            protected: Vec::new(),
            limits: Limits::default(),
            add_with: None,
            invite_message: None,
            groups: Vec::new(),
            portals: portal.iter().cloned().collect(),
        },
        portal,
    };
    let which = if args.all {
        Which::All
    } else {
        Which::Groups(
            args.groups
                .iter()
                .map(|g| GroupRef::parse(system, g))
                .collect(),
        )
    };
    if let Some(out) = &args.out
        && out.exists()
        && !args.force
    {
        bail!(
            "{} exists: give another --out, or --force to overwrite it",
            spec::escape(&out.display().to_string())
        );
    }
    let conn = Connection::open(&target, &address, &args.portal).await?;
    let snapshot = crate::import::snapshot(&conn.provider, &which).await;
    conn.close().await?;
    let snapshot = snapshot.with_context(|| format!("cannot import {}", target.label()))?;
    let source = identity(&address)?;
    let doc = crate::import::document(&snapshot, name.as_deref(), &source);
    let text = crate::canonical::emit(&doc);
    // What import writes, plan must read: checked here rather than found by the user.
    if let Err(d) = spec::parse("(import)", &text) {
        bail!(
            "import made a file roster cannot read (a bug): {}",
            d.shown.first().map(ToString::to_string).unwrap_or_default()
        );
    }
    let memberships: usize = snapshot
        .groups
        .iter()
        .map(|g| usize::from(g.owner.is_some()) + g.moderators.len() + g.members.len())
        .sum();
    match &args.out {
        Some(out) => {
            write_whole(out, &text)?;
            let shown = spec::escape(&out.display().to_string());
            eprintln!(
                "roster: imported {} group(s), {memberships} membership(s) into {shown}; `roster plan {shown}` against this portal prints `No changes.`",
                snapshot.groups.len()
            );
        }
        None => crate::emit(&text)?,
    }
    Ok(Exit::Success)
}

/// Write a file whole or not at all: a temporary file beside it, renamed over it.
fn write_whole(out: &Path, text: &str) -> Result<()> {
    let shown = spec::escape(&out.display().to_string());
    // A symbolic link is written through (its target rewritten), not replaced by a file.
    let resolved;
    let out = if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        resolved = std::fs::canonicalize(out).with_context(|| format!("cannot write {shown}"))?;
        resolved.as_path()
    } else {
        out
    };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write {shown}"))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .with_context(|| format!("cannot write {shown}"))?;
    // A rewritten file keeps its mode (the temporary file is created 0600).
    if let Ok(meta) = std::fs::metadata(out) {
        std::fs::set_permissions(tmp.path(), meta.permissions())
            .with_context(|| format!("cannot write {shown}"))?;
    }
    tmp.persist(out)
        .with_context(|| format!("cannot write {shown}"))?;
    Ok(())
}

/// `roster fmt FILE [--check]`: rewrite the file canonically (comments kept, or refused with
/// where), or with `--check` print the diff and exit 1 when it is not canonical.
pub(crate) fn fmt(file: &Path, check: bool) -> Result<Exit> {
    let shown = spec::escape(&file.display().to_string());
    let bytes = crate::read_capped(file)?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        // The parser says where the first invalid byte is.
        crate::parse_loaded(file, &bytes)?;
        bail!("{shown} is not UTF-8");
    };
    let canonical = match crate::canonical::format(&file.display().to_string(), text) {
        Ok(c) => c,
        Err(crate::canonical::FormatError::Invalid(diags)) => {
            crate::print_diagnostics(&shown, &diags);
            eprintln!("roster: {shown} was left as it was");
            return Ok(Exit::Failure);
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "roster: {shown} was left as it was: fmt keeps every comment or changes nothing"
            );
            return Ok(Exit::Failure);
        }
    };
    if canonical == text {
        if check {
            eprintln!("roster: {shown} is canonical");
        }
        return Ok(Exit::Success);
    }
    if check {
        let diff = similar::TextDiff::from_lines(text, &canonical)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{shown} (as it is)"),
                &format!("{shown} (canonical)"),
            )
            .to_string();
        crate::emit(&diff)?;
        eprintln!("roster: {shown} is not canonical; `roster fmt {shown}` rewrites it so");
        return Ok(Exit::Failure);
    }
    write_whole(file, &canonical)?;
    eprintln!("roster: {shown} rewritten canonically (its comments kept)");
    Ok(Exit::Success)
}
