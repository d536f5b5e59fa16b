//! The task model and the agent↔master JSON protocol (v1 with the validation rules of the
//! original implementation, and v2). No I/O, no async, no HTTP: only types, parsing and
//! constants.

#![warn(unreachable_pub)]

pub mod facts;
mod tag;
mod task;
pub mod v2;
mod wire;

pub use tag::{Tag, MAX_TAGS, MAX_TAG_CHARS};
pub use task::{
    quote, Action, AgentName, PackageName, Task, TaskError, TaskSet, Version, MAX_FIELD_CHARS,
};
pub use wire::{parse_task_list, render_task_list, ProtocolError};

/// The one v1 endpoint: agents POST their pending tasks here and get the approved ones back.
pub const PENDING_TASKS_PATH: &str = "/v1/pending-tasks";

/// Largest request body the master accepts (bytes). A real report is a few kilobytes.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
