//! Benchmark of the UI and of approvals at fleet scale (issue 18's table): seeds a fresh
//! MariaDB database (`MASIF_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306`) with
//! AGENTS × TASKS pending tasks through the real report path, serves the real UI on a free
//! port, times its pages over HTTP, the store calls behind approving (as `POST /approve` makes
//! them), and unchanged reports through a second store while a third of the fleet is approved.
//!
//! `cargo run --release -p masif-ui --example ui-bench [-- --agents 100000]`;
//! `-- --smoke` is the reduced form CI runs (tests/ui_bench_smoke.rs), `--help` lists the rest.

#[path = "ui_bench/bench.rs"]
mod bench;

use clap::Parser;

/// Measures the UI and approvals with a seeded fleet (figures in docs/performance.md).
#[derive(Debug, Parser)]
#[command(name = "ui-bench")]
struct Args {
    /// Agents in the fleet.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(3..))]
    agents: u32,
    /// Pending tasks of every agent.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=1000))]
    tasks: u32,
    /// Requests per page and calls per store read (median and max of these).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Reports at once while seeding (the store writes them in batches).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=4096))]
    seed_concurrency: u32,
    /// Least unchanged reports sent while a third of the fleet is approved (default: the
    /// fleet, at most 10,000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    reports: Option<u32>,
    /// Reports at once during that approval (the master's load generator sends 64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    report_concurrency: u32,
    /// Every this many reports during that approval adds a task of its own to the agent's
    /// pending set, so that it writes (0: all unchanged).
    #[arg(long, default_value_t = 0)]
    changed_every: u32,
    /// The reduced form CI runs: 1,000 agents × 5 tasks, 3 runs, 1,000 reports, every
    /// 10th changed (the other flags but `--keep` are ignored).
    #[arg(long)]
    smoke: bool,
    /// Keep the database afterwards (for a look at the query plans); also `MASIF_BENCH_KEEP=1`.
    #[arg(long)]
    keep: bool,
    /// Only seed the fleet, keep the database and print its name (to time statements on it
    /// by hand).
    #[arg(long)]
    seed_only: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = if args.smoke {
        bench::Config::smoke()
    } else {
        let agents = args.agents as usize;
        bench::Config {
            agents,
            tasks: args.tasks as usize,
            runs: args.runs as usize,
            seed_concurrency: args.seed_concurrency as usize,
            reports: args.reports.map_or(agents.min(10_000), |r| r as usize),
            report_concurrency: args.report_concurrency as usize,
            changed_every: args.changed_every as usize,
        }
    };
    if args.seed_only {
        let db = masif_testkit::db::TestDatabase::create("ui_bench").await;
        let url = db.url().parse().expect("database url");
        let store = masif_store::open(&url).await.expect("open store");
        bench::seed(&store, &config).await;
        store.flush().await;
        println!("seeded and kept database {} (drop it by hand)", db.name());
        std::mem::forget(db);
        return;
    }
    let keep = args.keep || std::env::var_os("MASIF_BENCH_KEEP").is_some();
    bench::run(config, keep).await.print();
}
