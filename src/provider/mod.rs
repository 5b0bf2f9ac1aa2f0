//! Providers: the portals roster can manage, one closed enum. Each provider's module is the only
//! place that knows its API's wire format; the rest of roster sees `model` types only.

pub mod bitrix24;
pub mod docspace;
pub mod list;
pub mod secret;

use std::collections::BTreeMap;

use crate::model::{
    CurrentState, DesiredState, GroupId, Lookups, OpStatus, Person, UserId, Wanted,
};
use crate::plan::Change;
pub use tokio_util::sync::CancellationToken;

/// A progress callback: called with the number of items finished since the last call.
pub type OnProgress<'a> = &'a (dyn Fn(usize) + Sync);

/// A connected portal.
pub enum Provider {
    Bitrix24(bitrix24::Client),
    DocSpace(docspace::Client),
}

impl Provider {
    /// The system this portal runs.
    pub fn system(&self) -> crate::model::System {
        match self {
            Provider::Bitrix24(_) => crate::model::System::Bitrix24,
            Provider::DocSpace(_) => crate::model::System::DocSpace,
        }
    }

    /// Read the current members of every declared group. `on_progress` is told how many
    /// groups each step finished.
    pub async fn fetch(
        &self,
        desired: &DesiredState,
        on_progress: OnProgress<'_>,
    ) -> Result<CurrentState, FetchError> {
        let ids: Vec<GroupId> = desired.groups.keys().copied().collect();
        match self {
            Provider::Bitrix24(c) => c.fetch(&ids, on_progress).await,
            Provider::DocSpace(c) => c.fetch(&ids, on_progress).await,
        }
    }

    /// Read every declared group that can be read, and each one that cannot with why (for
    /// example "no such group, or the webhook's user cannot see it"), so the others can still
    /// be planned. Fails as a whole only for what ends the run (`FetchError::RunWide`: the
    /// portal unreachable, the credentials refused).
    pub async fn fetch_each(
        &self,
        desired: &DesiredState,
        on_progress: OnProgress<'_>,
    ) -> Result<(CurrentState, Vec<(GroupId, String)>), FetchError> {
        let ids: Vec<GroupId> = desired.groups.keys().copied().collect();
        match self {
            Provider::Bitrix24(c) => c.fetch_each(&ids, on_progress).await,
            Provider::DocSpace(c) => c.fetch_each(&ids, on_progress).await,
        }
    }

    /// Look up what the file names by e-mail or group name, the user IDs it names, and the
    /// caller: everything the resolve step needs, in as few requests as the API allows.
    pub async fn lookup(&self, wanted: &Wanted) -> Result<Lookups, FetchError> {
        match self {
            Provider::Bitrix24(c) => c.lookup(wanted).await,
            Provider::DocSpace(c) => c.lookup(wanted).await,
        }
    }

    /// The portal's groups that `which` names, each once by ID ascending, with their names
    /// (for `roster import`; see each provider's `list` module for the requests). A group asked
    /// for that the portal does not show, or a name that matches several, fails the call
    /// (`FetchError::Lookup`, one line naming each).
    pub async fn list_groups(
        &self,
        which: &list::Which,
    ) -> Result<Vec<list::GroupInfo>, FetchError> {
        match self {
            Provider::Bitrix24(c) => c.list_groups(which).await,
            Provider::DocSpace(c) => c.list_groups(which).await,
        }
    }

    /// The portal's company structure: every department and every user with the departments
    /// they belong to (Bitrix24: see `bitrix24::structure` for the requests). ONLYOFFICE
    /// DocSpace has no departments: an error saying so.
    pub async fn structure(&self) -> Result<crate::structure::Structure, FetchError> {
        match self {
            Provider::Bitrix24(c) => c.structure().await,
            Provider::DocSpace(_) => Err(FetchError::Lookup(vec![
                "ONLYOFFICE DocSpace has no departments (no company structure to read); department rules need a Bitrix24 portal".to_owned(),
            ])),
        }
    }

    /// The portal's users with these IDs (for showing people the file does not name).
    pub async fn people(&self, ids: &[UserId]) -> Result<Vec<Person>, FetchError> {
        match self {
            Provider::Bitrix24(c) => c.people(ids).await,
            Provider::DocSpace(c) => c.people(ids).await,
        }
    }

    /// Carry out changes; the result has one status per input, in the same order. A failure
    /// never stops the other changes. `on_progress` counts changes finished, adding up to
    /// `changes.len()`. Once `stop` is cancelled no new request is started and every wait ends:
    /// what is in flight finishes (bounded by the request timeout), unconfirmed changes are
    /// settled by reading their groups again as usual, and changes never sent are
    /// `OpStatus::NotStarted`.
    /// `invite_messages` holds each group's invitation text.
    pub async fn execute(
        &self,
        changes: &[(GroupId, Change)],
        invite_messages: &BTreeMap<GroupId, String>,
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<OpStatus> {
        match self {
            Provider::Bitrix24(c) => c.execute(changes, invite_messages, on_progress, stop).await,
            // DocSpace has no invitations: nothing to say in one.
            Provider::DocSpace(c) => c.execute(changes, on_progress, stop).await,
        }
    }

    /// What the run could not see on the portal so far, one line each (for example a read
    /// without invitations and department links, for want of the `socialnetwork` scope), for
    /// the plan's warnings in text and JSON. Call after `lookup`, `fetch_each` and `people`.
    pub fn read_warnings(&self) -> Vec<String> {
        match self {
            Provider::Bitrix24(c) => c.read_warnings(),
            Provider::DocSpace(c) => c.read_warnings(),
        }
    }

    /// Requests sent and retries made so far.
    pub fn counters(&self) -> bitrix24::Counters {
        match self {
            Provider::Bitrix24(c) => c.counters(),
            Provider::DocSpace(c) => c.counters(),
        }
    }
}

/// Reading the current state failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Some groups could not be read (each with its reason).
    #[error("could not read {} group(s):\n{}", .0.len(), .0.iter().map(|(g, e)| format!("  group {g}: {e}")).collect::<Vec<_>>().join("\n"))]
    Groups(Vec<(GroupId, String)>),
    /// The run as a whole failed: the portal did not answer (connection refused, no answer
    /// within the timeout, DNS) or refused the webhook. Reported once, with how many groups
    /// were left unread.
    #[error("{cause} ({unread} group(s) not read)")]
    RunWide { cause: String, unread: usize },
    /// Looking up users or groups failed (each failed command with its error).
    #[error("could not look up users or groups:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Lookup(Vec<String>),
}
