//! Masif Upgrader's all-in-one crate: `masif demo` (master, UI and agents in one process on
//! loopback) and the command line on the UI's JSON API ([`cli`]: `masif pending`, `approve`,
//! `agents`, `check-fleet`…). The only crate that depends on every other one.

#![warn(unreachable_pub)]

pub mod cli;
pub mod demo;
