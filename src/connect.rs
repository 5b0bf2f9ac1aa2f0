//! Connecting to the portals a file names: where each one is (`--portal`, the environment),
//! which system it is, its credentials, and the in-process sandboxes. Shell code: it reads the
//! environment and state files and starts servers; everything it decides is said in errors
//! that name the portal and the variable or flag to set.
//!
//! Addresses are found for every portal before any is contacted, so a missing variable for the
//! second portal fails the run before the first one is read.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::PortalArgs;
use crate::model::System;
use crate::provider::bitrix24::{self, Auth, OAuthConfig, Secret, Webhook};
use crate::provider::{Provider, docspace};
use crate::sandbox;
use crate::spec::{self, PortalSpec};

/// One portal of a run and its part of the file.
pub(crate) struct Target {
    /// The file's `portals:` entry; `None` for a single-portal file (Bitrix24, `--portal`).
    pub(crate) portal: Option<PortalSpec>,
    pub(crate) spec: spec::Spec,
}

impl Target {
    pub(crate) fn system(&self) -> System {
        self.portal.as_ref().map_or(System::Bitrix24, |p| p.system)
    }

    /// How messages name the portal: `portal "docs"`, or `the portal` for a plain file.
    pub(crate) fn label(&self) -> String {
        match &self.portal {
            Some(p) => format!("portal \"{}\"", p.name),
            None => "the portal".to_owned(),
        }
    }
}

/// The file cut into its portals (`spec::Spec::split`).
pub(crate) fn targets(spec: spec::Spec) -> Vec<Target> {
    spec.split()
        .into_iter()
        .map(|(portal, spec)| Target { portal, spec })
        .collect()
}

/// `--portal NAME=ADDRESS` as (NAME, ADDRESS); `None` for a bare ADDRESS (a URL's `=` comes
/// after a `:` or `/`, which a name never holds).
pub(crate) fn named_address(given: &str) -> Option<(&str, &str)> {
    given.split_once('=').filter(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// Where each target is. A plain file: `--portal ADDRESS`, else `ROSTER_PORTAL`. A file with
/// `portals:`: `--portal NAME=ADDRESS` for a declared portal, a bare `--portal ADDRESS` when
/// the file has one portal only, else the portal's `url_env` variable (never `ROSTER_PORTAL`:
/// a Bitrix24 webhook left in the environment must not become a DocSpace portal's address, nor
/// receive its key). No two portals may be one (the same address or sandbox file). Checked for
/// every target before anything is contacted.
pub(crate) fn addresses(
    targets: &[Target],
    args: &PortalArgs,
    declared: &[String],
) -> Result<Vec<String>> {
    let names_declared = declared;
    let declared = declared.len();
    let env_portal = std::env::var("ROSTER_PORTAL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut named: Vec<(&str, &str)> = Vec::new();
    let mut bare: Vec<&str> = Vec::new();
    for given in &args.portal {
        match named_address(given) {
            Some(pair) => named.push(pair),
            None => bare.push(given),
        }
    }
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t.portal.as_ref().map(|p| p.name.as_str()))
        .collect();
    for (i, (name, _)) in named.iter().enumerate() {
        if named[..i].iter().any(|(n, _)| n == name) {
            bail!("--portal {name}=… is given twice");
        }
        // A declared portal this run has no group on (`--group`, or none in the file) is
        // accepted and not contacted.
        if !names.contains(name) && !names_declared.iter().any(|d| d == name) {
            bail!(
                "--portal {name}=…: the file declares no portal named {name:?}{}",
                if names_declared.is_empty() {
                    String::new()
                } else {
                    format!(" (its portals: {})", names_declared.join(", "))
                }
            );
        }
    }
    if bare.len() > 1 {
        bail!(
            "--portal is given {} times without a name; for a file with several portals give each as --portal NAME=ADDRESS",
            bare.len()
        );
    }
    if !bare.is_empty() && declared > 1 {
        let vars: Vec<&str> = targets
            .iter()
            .filter_map(|t| t.portal.as_ref().map(|p| p.url_env.as_str()))
            .collect();
        bail!(
            "--portal ADDRESS is for a file with one portal; this file declares {declared}: give each as --portal NAME=ADDRESS, or set {}",
            vars.join(", ")
        );
    }
    let found: Vec<String> = targets
        .iter()
        .map(|t| {
            let Some(p) = &t.portal else {
                return bare
                    .first()
                    .map(|s| (*s).to_owned())
                    .or_else(|| env_portal.clone())
                    .context(
                        "no portal given: pass --portal (a Bitrix24 webhook URL or sandbox:PATH) or set ROSTER_PORTAL",
                    );
            };
            if let Some((_, a)) = named.iter().find(|(n, _)| *n == p.name) {
                return Ok((*a).to_owned());
            }
            if let Some(a) = bare.first() {
                return Ok((*a).to_owned());
            }
            match std::env::var(&p.url_env) {
                Ok(v) if !v.trim().is_empty() => Ok(v),
                _ => bail!(
                    "no address for portal {:?} ({}): set {} or pass --portal {}=ADDRESS ({}){}",
                    p.name,
                    p.system.title(),
                    p.url_env,
                    p.name,
                    match p.system {
                        System::Bitrix24 =>
                            "a webhook URL https://HOST/rest/USER/CODE/, or sandbox:PATH",
                        System::DocSpace => "https://HOST, or sandbox:PATH",
                    },
                    if env_portal.is_some() {
                        "; ROSTER_PORTAL is set, and is only for a file without `portals:`"
                    } else {
                        ""
                    }
                ),
            }
        })
        .collect::<Result<_>>()?;
    // Two names for one portal would apply two desired states to it in turn (and split its
    // removal limits): refused. Addresses compare without a trailing `/` and in lower case;
    // sandbox files by their real path.
    let key = |a: &str| match a.strip_prefix("sandbox:") {
        Some(path) => format!(
            "sandbox:{}",
            std::fs::canonicalize(path).map_or(path.to_owned(), |p| p.display().to_string())
        ),
        None => a.trim().trim_end_matches('/').to_lowercase(),
    };
    for (i, a) in found.iter().enumerate() {
        if let Some(j) = found[..i].iter().position(|b| key(a) == key(b)) {
            bail!(
                "{} and {} are the same portal ({}); declare it once",
                targets[j].label(),
                targets[i].label(),
                if a.starts_with("sandbox:") {
                    a.as_str()
                } else {
                    "the same address"
                }
            );
        }
    }
    Ok(found)
}

/// A running in-process sandbox.
enum RunningSandbox {
    Bitrix24(sandbox::bitrix24::Sandbox),
    DocSpace(sandbox::docspace::Sandbox),
}

/// A connected portal, and the in-process sandbox behind it if any (shut down by `close`).
pub(crate) struct Connection {
    pub(crate) provider: Provider,
    sandbox: Option<RunningSandbox>,
}

/// The system a sandbox state file describes.
fn sandbox_system(path: &Path) -> Result<System> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the sandbox state {}", path.display()))?;
    Ok(if sandbox::docspace::is_docspace_state(&text) {
        System::DocSpace
    } else {
        System::Bitrix24
    })
}

impl Connection {
    /// Connect to `target` at `address` (`sandbox:PATH` starts the emulator in-process).
    pub(crate) async fn open(
        target: &Target,
        address: &str,
        args: &PortalArgs,
    ) -> Result<Connection> {
        let system = target.system();
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        if let Some(path) = address.strip_prefix("sandbox:") {
            if path.is_empty() {
                bail!("`sandbox:` needs a state file path, e.g. sandbox:examples/sandbox.yaml");
            }
            let path = PathBuf::from(path);
            let found = sandbox_system(&path)?;
            if found != system {
                bail!(
                    "{} is a {} sandbox, but {} is a {} portal{}",
                    path.display(),
                    found.title(),
                    target.label(),
                    system.title(),
                    if target.portal.is_none() {
                        "; a file for DocSpace declares it: `portals: {NAME: {docspace: {}}}`"
                    } else {
                        ""
                    }
                );
            }
            return match system {
                System::Bitrix24 => {
                    let sandbox =
                        sandbox::bitrix24::Sandbox::start_with(&path, local, sandbox_options()?)
                            .await
                            .with_context(|| {
                                format!("cannot start the sandbox on {}", path.display())
                            })?;
                    let url = sandbox.webhook_url().with_context(|| {
                        format!(
                            "{} declares no webhook to call the sandbox with",
                            path.display()
                        )
                    })?;
                    let provider = bitrix24_client(Auth::from(Webhook::parse(&url)?), args)?;
                    Ok(Connection {
                        provider,
                        sandbox: Some(RunningSandbox::Bitrix24(sandbox)),
                    })
                }
                System::DocSpace => {
                    let options = sandbox::docspace::StartOptions {
                        lock_wait: sandbox_options()?.lock_wait,
                        ..sandbox::docspace::StartOptions::default()
                    };
                    let sandbox = sandbox::docspace::Sandbox::start_with(&path, local, options)
                        .await
                        .with_context(|| {
                            format!("cannot start the sandbox on {}", path.display())
                        })?;
                    // A key from the environment wins (to try a wrong one); else the sandbox's.
                    let (auth, source) = match docspace_key(target)? {
                        Some(auth) => (auth, key_var(target)),
                        None => (
                            docspace_auth(sandbox.api_key().with_context(|| {
                                format!(
                                    "{} declares no API key to call the sandbox with",
                                    path.display()
                                )
                            })?),
                            Some(format!("the sandbox state {}", path.display())),
                        ),
                    };
                    let provider = docspace_client(&sandbox.base_url(), auth, source, args)?;
                    Ok(Connection {
                        provider,
                        sandbox: Some(RunningSandbox::DocSpace(sandbox)),
                    })
                }
            };
        }
        let provider = match system {
            System::Bitrix24 => bitrix24_client(
                Auth::parse(address, &oauth_config(args.oauth_token_file.as_deref()))?,
                args,
            )?,
            System::DocSpace => {
                if address.contains("/rest/") {
                    bail!(
                        "{} is a DocSpace portal, and its address looks like a Bitrix24 webhook or REST URL (…/rest/…); give the DocSpace portal's own address, https://HOST",
                        target.label()
                    );
                }
                let auth = docspace_key(target)?.with_context(|| {
                    let var = target
                        .portal
                        .as_ref()
                        .and_then(|p| p.key_env.clone())
                        .unwrap_or_default();
                    format!(
                        "no credentials for {}: set {var} to a DocSpace API key (sk-…) or a personal access token",
                        target.label()
                    )
                })?;
                docspace_client(address, auth, key_var(target), args)?
            }
        };
        Ok(Connection {
            provider,
            sandbox: None,
        })
    }

    /// Stop the in-process sandbox, making sure its state is on disk.
    pub(crate) async fn close(self) -> Result<()> {
        match self.sandbox {
            Some(RunningSandbox::Bitrix24(s)) => s
                .shutdown()
                .await
                .context("cannot shut the sandbox down cleanly")?,
            Some(RunningSandbox::DocSpace(s)) => s
                .shutdown()
                .await
                .context("cannot shut the sandbox down cleanly")?,
            None => {}
        }
        Ok(())
    }
}

fn bitrix24_client(auth: Auth, args: &PortalArgs) -> Result<Provider> {
    tracing::info!(portal = %auth.display(), "connecting");
    let options = bitrix24::Options {
        rate: args.rate_limit.0,
        timeout: args.timeout,
        ..bitrix24::Options::default()
    };
    Ok(Provider::Bitrix24(bitrix24::Client::new(auth, options)?))
}

fn docspace_client(
    base_url: &str,
    auth: docspace::Auth,
    credentials_source: Option<String>,
    args: &PortalArgs,
) -> Result<Provider> {
    let options = docspace::Options {
        timeout: args.timeout,
        credentials_source,
        ..docspace::Options::default()
    };
    let client =
        docspace::Client::new(base_url, auth, options).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Provider::DocSpace(client))
}

/// An API key (`sk-…`) or a personal access token, told apart by the key's form.
fn docspace_auth(secret: String) -> docspace::Auth {
    if secret.starts_with("sk-") {
        docspace::Auth::ApiKey(Secret::new(secret))
    } else {
        docspace::Auth::Token(Secret::new(secret))
    }
}

/// The variable a target's DocSpace credentials come from.
fn key_var(target: &Target) -> Option<String> {
    target.portal.as_ref().and_then(|p| p.key_env.clone())
}

/// The DocSpace credentials in the portal's `key_env` variable, if set.
fn docspace_key(target: &Target) -> Result<Option<docspace::Auth>> {
    let Some(var) = target.portal.as_ref().and_then(|p| p.key_env.as_deref()) else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(docspace_auth(v.trim().to_owned()))),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{var} is not valid UTF-8"),
    }
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

/// How an in-process or served sandbox starts: the state-file lock wait comes from
/// `ROSTER_SANDBOX_LOCK_WAIT` (seconds), default 10.
pub(crate) fn sandbox_options() -> Result<sandbox::bitrix24::StartOptions> {
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

/// Whether a sandbox state file is a DocSpace portal's (for `sandbox serve`).
pub(crate) fn is_docspace_sandbox(path: &Path) -> Result<bool> {
    Ok(sandbox_system(path)? == System::DocSpace)
}
