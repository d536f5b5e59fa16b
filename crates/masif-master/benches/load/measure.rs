//! What the load generator reads from `/proc` (CPU time and memory of the master, MariaDB and
//! itself) and how it summarises latencies.

use std::time::Duration;

/// CPU seconds (user + system) of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`, `RssAnon:`).
pub fn memory_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

pub fn mib(pid: u32, key: &str) -> f64 {
    memory_kib(pid, key) as f64 / 1024.0
}

pub fn find_process(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// CPU seconds of the masters, the database servers and the load generator at one moment
/// (NaN for the servers when none is known).
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub master: f64,
    pub db: f64,
    pub generator: f64,
    /// CPU seconds the whole machine spent busy (all processes, from `/proc/stat`).
    pub machine: f64,
}

impl Cpu {
    pub fn now(masters: &[u32], dbs: &[u32]) -> Self {
        Self {
            master: masters.iter().copied().map(cpu_seconds).sum(),
            db: match dbs.is_empty() {
                true => f64::NAN,
                false => dbs.iter().copied().map(cpu_seconds).sum(),
            },
            generator: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
        }
    }

    /// CPU used since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            master: self.master - earlier.master,
            db: self.db - earlier.db,
            generator: self.generator - earlier.generator,
            machine: self.machine - earlier.machine,
        }
    }
}

/// CPU seconds all cores have been busy since boot (user, nice, system, irq, softirq, steal).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

/// The 1-minute load average of the machine.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The `p` quantile (0 to 1) of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}
