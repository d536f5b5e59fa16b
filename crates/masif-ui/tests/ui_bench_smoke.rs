//! `ui-bench` in its reduced form (1,000 agents × 5 tasks on MariaDB): the bench still seeds,
//! serves every page it times, finds the agents awaiting a row, approves and sends reports
//! during an approval. Timings are printed, never asserted.

#[path = "../examples/ui_bench/bench.rs"]
mod bench;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_bench_runs_in_reduced_form() {
    let config = bench::Config::smoke();
    let figures = bench::run(config.clone(), false).await;
    figures.print();

    let (agents, tasks) = (config.agents as u64, config.tasks as u64);
    assert_eq!(figures.pending_rows, agents * tasks, "seeded task rows");
    assert!(
        figures.pages.iter().all(|p| p.bytes > 0),
        "every page has a body"
    );
    // base-00 -> 2.0 is awaited by every third agent.
    let third = config.agents.div_ceil(3);
    assert_eq!(figures.awaiting.0, third, "agents awaiting base-00 -> 2.0");
    assert_eq!(figures.approve_awaiting.agents, Some(third));
    assert_eq!(
        figures.approve_awaiting.outcome.pending_rows_approved,
        third as u64
    );
    assert_eq!(
        figures.approve_under_load.agents,
        Some((config.agents + 1) / 3)
    );
    assert!(
        figures.load.sent >= config.reports,
        "{} reports sent, wanted at least {}",
        figures.load.sent,
        config.reports
    );
    assert!(figures.approve_all.outcome.approvals_written > 0);
    let written = figures.approve_awaiting.outcome.approvals_written
        + figures.approve_under_load.outcome.approvals_written
        + figures.approve_one_for_all.outcome.approvals_written
        + figures.approve_all.outcome.approvals_written;
    assert_eq!(figures.approvals.0, written, "approval rows listed");
}
