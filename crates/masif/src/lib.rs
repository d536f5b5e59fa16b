//! Masif Upgrader's all-in-one crate: `masif demo` (master, UI and agents in one process on
//! loopback) and admin commands. The only crate that depends on every other one.

#![warn(unreachable_pub)]

pub mod demo;
