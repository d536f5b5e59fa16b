//! The `masif` command line's API subcommands: options to a client, each subcommand's request
//! and its table (or the API's JSON with `--json`), and the exit code: 0 ok, 1 API error,
//! 2 usage; `check-fleet` answers as a monitoring plugin (0 to 3).

mod agents;
mod approvals;
mod args;
mod client;
mod fleet;
mod model;
mod pending;
mod rollouts;
mod tags;
mod text;
mod windows;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use args::{
    ApiCommand, Connection, FleetThresholds, MaxInFlight, OnceSpec, Paging, RolloutCommand,
    TagCommand, TaskSpec, WeeklySpec, SYSTEM_CA_BUNDLE,
};
pub use client::{ApiClient, ApiError, MAX_ANSWER_BYTES};

/// Exit code of a usage problem (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of an API error.
pub const EXIT_API: u8 = 1;
/// Most bytes of a token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// What a subcommand printed and its exit code.
#[derive(Debug)]
pub struct Outcome {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Self {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    fn fail(code: u8, message: impl std::fmt::Display) -> Self {
        Self {
            code,
            stdout: String::new(),
            stderr: format!("masif: {message}\n"),
        }
    }
}

/// Runs an API subcommand to its end.
pub fn run(command: ApiCommand) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Outcome::fail(EXIT_API, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(dispatch(command))
}

async fn dispatch(command: ApiCommand) -> Outcome {
    use ApiCommand as C;
    if let C::CheckFleet { conn, thresholds } = &command {
        return fleet::check(client(conn).await, thresholds, conn.json).await;
    }
    let conn = connection_of(&command).clone();
    let client = match client(&conn).await {
        Ok(c) => c,
        Err(e) => return Outcome::fail(EXIT_USAGE, e),
    };
    let json = conn.json;
    let answer = match command {
        C::Pending {
            package,
            agent,
            action,
            security,
            tag,
            paging,
            ..
        } => {
            let filter = pending::Filter {
                package,
                agent,
                action,
                security,
                tag,
            };
            pending::list(&client, &filter, &paging, json).await
        }
        C::Approve {
            package,
            action,
            to_version,
            from_version,
            tasks,
            agents,
            tag,
            ..
        } => {
            let positional = package
                .zip(action)
                .map(|(package, action)| approvals::Wanted {
                    spec: TaskSpec {
                        action,
                        package,
                        to_version,
                    },
                    from_version,
                });
            let all: Vec<_> = positional
                .into_iter()
                .chain(tasks.into_iter().map(approvals::Wanted::from))
                .collect();
            if all.is_empty() {
                return Outcome::fail(
                    EXIT_USAGE,
                    "approve needs a task: PACKAGE ACTION [TO_VERSION] or --task ACTION:PACKAGE[=VERSION]",
                );
            }
            approvals::approve(&client, &all, &agents, tag.as_ref(), json).await
        }
        C::Approvals { paging, .. } => approvals::list(&client, &paging, json).await,
        C::Revoke { ids, .. } => return approvals::revoke(&client, &ids, json).await,
        C::Agents {
            name,
            offline,
            failing,
            reboot_required,
            tag,
            paging,
            ..
        } => {
            let filter = agents::Filter {
                name,
                offline,
                failing,
                reboot_required,
                tag,
            };
            agents::list(&client, &filter, &paging, json).await
        }
        C::Agent { name, paging, .. } => agents::show(&client, &name, &paging, json).await,
        C::Audit { paging, .. } => approvals::audit(&client, &paging, json).await,
        C::Tags { .. } => tags::list(&client, json).await,
        C::Tag {
            command:
                TagCommand::Set {
                    tag,
                    max_in_flight,
                    weekly,
                    once,
                    no_windows,
                    ..
                },
        } => {
            let change = tags::Change::new(max_in_flight, &weekly, &once, no_windows);
            tags::set(&client, tag.as_str(), change, json).await
        }
        C::Rollouts { paging, .. } => rollouts::list(&client, &paging, json).await,
        C::Rollout { command } => match command {
            RolloutCommand::Start {
                rings,
                soak,
                max_failure_percent,
                tasks,
                ..
            } => {
                let start = rollouts::Start {
                    rings,
                    soak,
                    max_failure_percent,
                    tasks,
                };
                rollouts::start(&client, &start, json).await
            }
            RolloutCommand::Show { id, .. } => rollouts::show(&client, id, json).await,
            RolloutCommand::Promote { id, force, .. } => {
                rollouts::promote(&client, id, force, json).await
            }
        },
        C::CheckFleet { .. } => unreachable!("answered above"),
    };
    match answer {
        Ok(stdout) => Outcome::ok(stdout),
        Err(e) => Outcome::fail(EXIT_API, e),
    }
}

fn connection_of(command: &ApiCommand) -> &Connection {
    use ApiCommand as C;
    match command {
        C::Pending { conn, .. }
        | C::Approve { conn, .. }
        | C::Approvals { conn, .. }
        | C::Revoke { conn, .. }
        | C::Agents { conn, .. }
        | C::Agent { conn, .. }
        | C::Audit { conn, .. }
        | C::Tags { conn }
        | C::Rollouts { conn, .. }
        | C::CheckFleet { conn, .. } => conn,
        C::Tag {
            command: TagCommand::Set { conn, .. },
        } => conn,
        C::Rollout { command } => match command {
            RolloutCommand::Start { conn, .. }
            | RolloutCommand::Show { conn, .. }
            | RolloutCommand::Promote { conn, .. } => conn,
        },
    }
}

/// The client the options describe; a missing or unusable URL, token or CA bundle is a usage
/// problem, described.
async fn client(conn: &Connection) -> Result<ApiClient, String> {
    let url = conn
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or("no API URL: give --url or set MASIF_URL")?;
    let token = match &conn.token_file {
        Some(path) => read_token(path)?,
        None => std::env::var("MASIF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or("no API token: give --token-file FILE or set MASIF_TOKEN")?
            .trim()
            .to_owned(),
    };
    let tls = match url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        false => None,
        true => {
            let ca = conn.ca.as_deref().unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
            let config =
                masif_pki::server_only_client_config(ca).map_err(|e| format!("--ca: {e}"))?;
            Some(Arc::new(config))
        }
    };
    ApiClient::new(url, token, tls, Duration::from_secs(conn.timeout))
}

/// The token in `path`: its first line without surrounding blanks.
fn read_token(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text))
        .map_err(|e| format!("--token-file {shown}: {e}"))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!("--token-file {shown}: the file holds no token"));
    }
    Ok(token.to_owned())
}

/// The API's JSON as `--json` prints it.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// `value` read as the answer type `T`.
fn typed<T: DeserializeOwned>(client: &ApiClient, value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| client.unexpected(e))
}

/// GETs `path` with the query `pairs` and the page's: with `--json` the answer as it came,
/// else `render` of it read as `T`.
async fn get_page<T: DeserializeOwned>(
    client: &ApiClient,
    path: &[&str],
    mut pairs: Vec<(&'static str, String)>,
    paging: &Paging,
    json: bool,
    render: impl FnOnce(&T) -> String,
) -> Result<String, ApiError> {
    pairs.extend(page_pairs(paging));
    let value = client.get(&client.url(path, &pairs)).await?;
    if json {
        return Ok(pretty(&value));
    }
    Ok(render(&typed(client, value)?))
}

/// The query pairs of a page.
fn page_pairs(paging: &Paging) -> Vec<(&'static str, String)> {
    vec![
        ("page", paging.page.to_string()),
        ("per_page", paging.per_page.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_give_their_first_line_and_refuse_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret \nsecond line\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("holds no token"));
        let missing = dir.path().join("missing");
        assert!(read_token(&missing).unwrap_err().contains("--token-file"));
    }
}
