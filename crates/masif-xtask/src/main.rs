//! `masif-xtask man DIR`: writes the section-8 man pages of the shipped commands
//! (`masif-agent.8`, `masif-master.8`, `masif-ui.8`, `masif-pki.8`), generated from their
//! clap definitions, into DIR; `masif-xtask api-doc FILE` writes the API reference
//! (`docs/api.md`) rendered from the UI's OpenAPI document. A development tool: no shipped
//! binary links clap_mangen.

mod api_doc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

/// Masif Upgrader development tasks.
#[derive(Parser)]
#[command(name = "masif-xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Write the man pages of the shipped commands into DIR (created if needed).
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write the API reference (Markdown) rendered from the UI's OpenAPI document to FILE.
    ApiDoc {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let done = match Cli::parse().task {
        Task::Man { dir } => man_pages(&dir),
        Task::ApiDoc { file } => api_doc::render(masif_ui::OPENAPI_DOCUMENT).and_then(|text| {
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("masif-xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Renders each shipped command's page as `DIR/NAME.8`.
fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for command in [
        masif_agent::cli::Args::command(),
        masif_master::cli::Args::command(),
        masif_ui::cli::Args::command(),
        masif_pki::cli::Cli::command(),
    ] {
        let name = command.get_name().to_owned();
        let path = dir.join(format!("{name}.8"));
        let page = render(command).with_context(|| format!("rendering the page of {name}"))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The page of `command`; a command with subcommands (`masif-pki`) gets one section per
/// subcommand with its synopsis and options after the usual ones.
fn render(command: clap::Command) -> std::io::Result<String> {
    let mut page = Vec::new();
    // Without clap's generated `help` subcommand: `--help` covers it.
    let command = command.disable_help_subcommand(true);
    let name = command.get_name().to_owned();
    let subcommands: Vec<clap::Command> = command.get_subcommands().cloned().collect();
    clap_mangen::Man::new(command)
        .section("8")
        .manual("Masif Upgrader")
        .render(&mut page)?;
    // The daemons' `after_long_help` is what they read from the environment.
    let mut page = String::from_utf8_lossy(&page).replacen(".SH EXTRA", ".SH ENVIRONMENT", 1);
    for sub in subcommands {
        // clap_mangen lists subcommands as pages of their own (`masif-pki-check(8)`); they
        // are sections of this page, so name them as typed.
        let roff_name = |s: &str| s.replace('-', "\\-");
        page = page.replace(
            &format!("{}\\-{}(8)", roff_name(&name), roff_name(sub.get_name())),
            &format!("{} {}", roff_name(&name), roff_name(sub.get_name())),
        );
        let full = format!("{name} {}", sub.get_name());
        let sub = sub.bin_name(&full).display_name(&full);
        let man = clap_mangen::Man::new(sub);
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_options_section(&mut section)?;
        // A subcommand's `after_long_help` (`masif-agent check`: ranges, the original's flags).
        man.render_extra_section(&mut section)?;
        let section = String::from_utf8_lossy(&section)
            .replacen(
                ".SH SYNOPSIS",
                &format!(".SH \"COMMAND {}\"", full.to_uppercase()),
                1,
            )
            .replacen(".SH OPTIONS", ".SS Options", 1)
            .replacen(".SH EXTRA", ".SS Notes", 1);
        page.push_str(&section);
    }
    Ok(page)
}
