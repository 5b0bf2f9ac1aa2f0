//! The command line, as clap types only. Parsing happens in `main.rs`; meaning in `crate::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::provider::bitrix24::RateProfile;

/// Declarative group membership for Bitrix24 and ONLYOFFICE DocSpace: plan and apply who
/// belongs to which group.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Colour in text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a desired-state file without contacting any portal.
    Validate {
        /// The desired-state YAML file.
        file: PathBuf,
    },
    /// Show what apply would change. Changes nothing.
    Plan(PlanArgs),
    /// Make the portal match the file (after showing the plan and asking).
    Apply(ApplyArgs),
    /// Write a desired-state file of a portal as it is now (canonical, so `plan` right after
    /// prints `No changes.`).
    Import(ImportArgs),
    /// Rewrite a desired-state file in its canonical form, keeping its comments.
    Fmt {
        /// The desired-state YAML file.
        file: PathBuf,
        /// Change nothing: print a diff and exit 1 when the file is not canonical.
        #[arg(long)]
        check: bool,
    },
    /// Print a shell completion script (e.g. `roster completions bash > /etc/bash_completion.d/roster`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `roster man > roster.1 && man ./roster.1`; with
    /// `--out-dir`, write it and one page per command (roster-plan.1, …) there.
    Man {
        /// Write roster.1 and a page per command into this directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// The built-in emulators of Bitrix24 and ONLYOFFICE DocSpace.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
}

#[derive(Debug, Args)]
pub struct PortalArgs {
    /// The portal: a Bitrix24 webhook URL `https://HOST/rest/USER_ID/CODE/`, a DocSpace address
    /// `https://HOST`, or `sandbox:PATH` to run the built-in sandbox on the state file PATH.
    /// For a file without `portals:` it defaults to $ROSTER_PORTAL. For a file with `portals:`,
    /// `NAME=ADDRESS` gives one portal's address (repeat for each; a portal not given here is
    /// found in its own `url_env` variable, never in ROSTER_PORTAL), and a bare ADDRESS is
    /// accepted when the file has one portal.
    #[arg(long, value_name = "[NAME=]ADDRESS")]
    pub portal: Vec<String>,
    /// The Bitrix24 portal's request limit, which roster keeps to so the portal never has to
    /// refuse: `cloud` (burst 50, 2/s), `enterprise` (250, 5/s), `BURST/PER_SECOND`, or `off`.
    /// (DocSpace: roster keeps to the portal's one-minute window as its 429s tell it.)
    #[arg(long, env = "ROSTER_RATE_LIMIT", default_value = "cloud", value_parser = parse_rate)]
    pub rate_limit: Rate,
    /// Seconds to wait for each answer from the portal before retrying (1–600). A portal that
    /// never answers fails the run after three such waits, about 2 minutes by default.
    #[arg(long, env = "ROSTER_TIMEOUT", default_value = "30", value_parser = parse_timeout, value_name = "SECONDS")]
    pub timeout: std::time::Duration,
    /// OAuth only (`--portal https://HOST/rest/`): the file that keeps the current tokens. Read
    /// at start (its tokens win over ROSTER_OAUTH_ACCESS_TOKEN/ROSTER_OAUTH_REFRESH_TOKEN) and
    /// rewritten (mode 0600) after every refresh.
    #[arg(long, env = "ROSTER_OAUTH_TOKEN_FILE", value_name = "FILE")]
    pub oauth_token_file: Option<PathBuf>,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let secs: u64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("expected a whole number of seconds, got {s:?}"))?;
    if !(1..=600).contains(&secs) {
        return Err(format!("must be between 1 and 600 seconds, got {secs}"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// A parsed `--rate-limit` (`None`: no client-side pacing).
#[derive(Debug, Clone, Copy)]
pub struct Rate(pub Option<RateProfile>);

fn parse_rate(s: &str) -> Result<Rate, String> {
    RateProfile::parse(s).map(Rate)
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The desired-state YAML file.
    pub file: PathBuf,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Output format: text, json (versioned; schemas/plan.schema.json) or markdown (for a
    /// pull-request comment, at most 65,000 characters).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also show, per changed group, a unified diff of its membership (current → planned) as
    /// YAML. Text and markdown formats only.
    #[arg(long)]
    pub diff: bool,
    /// Write the plan to this file as well (JSON, no secrets), for `roster apply PLAN_FILE` to
    /// carry out exactly, after checking the groups it changes have not moved. Written only
    /// when apply would accept the plan.
    #[arg(long, value_name = "PLAN_FILE")]
    pub out: Option<PathBuf>,
    /// Plan only this group (ID or name as the file gives it); repeat for several.
    #[arg(long = "group", value_name = "ID|NAME")]
    pub groups: Vec<String>,
    /// Exit 2 when the plan has changes (0 none, 1 error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Accept, for this run only, a plan that removes more than the file's `limits:` (or the
    /// defaults) allow.
    #[arg(long)]
    pub allow_mass_removal: bool,
    /// Plan an owner change (`sonet_group.setowner`) where a group's `owner:` differs from the
    /// portal's; without it a differing owner is only reported.
    #[arg(long)]
    pub allow_owner_change: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The desired-state YAML file, or a plan file written by `plan --out` (applied exactly as
    /// planned, without asking, once the groups it changes are found unchanged).
    pub file: PathBuf,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Output format of the report: text, or json (versioned;
    /// schemas/apply-report.schema.json), when the plan goes to stderr.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Apply only this group (ID or name as the file gives it); repeat for several. Not with a
    /// plan file (it holds the groups it was made for).
    #[arg(long = "group", value_name = "ID|NAME")]
    pub groups: Vec<String>,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Apply, for this run only, a plan that removes more than the file's `limits:` (or the
    /// defaults) allow.
    #[arg(long)]
    pub allow_mass_removal: bool,
    /// Change a group's owner (`sonet_group.setowner`, before its other changes) where its
    /// `owner:` differs from the portal's; the old owner becomes a member and is reconciled in
    /// the same run. Without it a differing owner is only reported.
    #[arg(long)]
    pub allow_owner_change: bool,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Serve the sandbox portal over HTTP until interrupted; every change is written to the
    /// state file.
    Serve {
        /// The sandbox state file (YAML), e.g. examples/sandbox.yaml.
        #[arg(long)]
        state: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8024")]
        listen: SocketAddr,
    },
    /// Write a generated portal (`portal.yaml`) and a desired state that differs from it
    /// (`groups.yaml`) into a directory, to try roster at scale.
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 200)]
        groups: usize,
        /// Members per group, the owner (DocSpace: the manager) included.
        #[arg(long, default_value_t = 40)]
        members: usize,
        /// Fraction of memberships the desired state changes.
        #[arg(long, default_value_t = 0.05)]
        churn: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Overwrite portal.yaml and groups.yaml if the directory already has them.
        #[arg(long)]
        force: bool,
        /// The system of the generated portal.
        #[arg(long, value_enum, default_value_t = SystemArg::Bitrix24)]
        system: SystemArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SystemArg {
    Bitrix24,
    Docspace,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Import this group (ID or exact name); repeat for several.
    #[arg(
        long = "group",
        value_name = "ID|NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub groups: Vec<String>,
    /// Import every group the portal shows the run's user.
    #[arg(long)]
    pub all: bool,
    /// Write here instead of standard output (refused if the file exists, unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}
