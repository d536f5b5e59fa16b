//! `masif-agent --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT (a running apt/dpkg call is finished first).
//! `masif-agent check` (or the binary called as check_masifupgrader_agent) is the
//! monitoring plugin instead.

use std::process::ExitCode;

use clap::Parser;
use masif_agent::cli::{Args, Command};
use masif_agent::{check, AgentConfig};
use masif_daemon::{config, logging, shutdown};

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let plugin = check::is_check(&argv);
    let args = match check::translate(argv).map(Args::try_parse_from) {
        Ok(Ok(args)) => args,
        // Usage errors of the plugin are UNKNOWN (3), not clap's 2 (CRITICAL to a monitor).
        Ok(Err(e)) if plugin && e.use_stderr() => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            return plugin_exit(check::unknown(first.trim_start_matches("error: ")));
        }
        Ok(Err(e)) => e.exit(),
        Err(message) => return plugin_exit(check::unknown(&message)),
    };
    if let Some(Command::Check(check_args)) = &args.command {
        return plugin_exit(check::run(check_args));
    }
    let config: AgentConfig = match config::load_or_report(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if args.check_config {
        return config::report_check(&args.config, &masif_agent::check(&config));
    }
    logging::init(config.log_level.directive(), logging::Output::Stdout);
    // One worker thread is plenty: the agent mostly waits for apt and the network.
    let result = shutdown::run_until_signal(
        tokio::runtime::Builder::new_current_thread(),
        |shutdown| async { Ok(masif_agent::run(config, shutdown).await?) },
    );
    logging::exit_code("masif-agent", result)
}

fn plugin_exit((code, text): (u8, String)) -> ExitCode {
    print!("{text}");
    ExitCode::from(code)
}
