//! CPU time, read from `/proc` (Linux): the machine's, and a PostgreSQL server's (its postmaster
//! and every backend it forked). SCALEOUT uses it to say where a workload's CPU went, since on one
//! machine a standby or a second shard shares the cores it would have to itself elsewhere.

use std::path::Path;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on every Linux architecture
/// Strata builds for).
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    /// The machine's busy ticks (all cores) and its total ticks.
    machine_busy: u64,
    machine_total: u64,
    /// Ticks of each watched server, in the order given.
    servers: [u64; 2],
}

/// CPU use between two samples, or summed over several windows.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// Seconds of CPU the machine spent busy, all cores together.
    busy_seconds: f64,
    /// Seconds of CPU the machine had, all cores together.
    total_seconds: f64,
    /// Seconds of CPU each watched server used.
    pub(crate) servers_seconds: [f64; 2],
}

impl CpuUse {
    /// Adds another window of the same condition.
    pub(crate) fn add(&mut self, other: CpuUse) {
        self.busy_seconds += other.busy_seconds;
        self.total_seconds += other.total_seconds;
        for (sum, more) in self.servers_seconds.iter_mut().zip(other.servers_seconds) {
            *sum += more;
        }
    }

    /// The machine's busy share of its cores' time.
    pub(crate) fn machine_busy_share(&self) -> f64 {
        self.busy_seconds / self.total_seconds.max(1e-9)
    }

    /// Cores a watched server kept busy on average over `elapsed` seconds.
    pub(crate) fn server_cores(&self, server: usize, elapsed: f64) -> f64 {
        self.servers_seconds[server] / elapsed.max(1e-9)
    }
}

impl CpuSample {
    /// Reads the counters now, for the servers whose data folders are `servers`. Zeros where
    /// `/proc` cannot tell (another operating system): the figures then read 0.
    pub(crate) fn now(servers: [&Path; 2]) -> CpuSample {
        let (machine_busy, machine_total) = machine().unwrap_or_default();
        CpuSample {
            machine_busy,
            machine_total,
            servers: servers.map(|data| server_ticks(data).unwrap_or_default()),
        }
    }

    /// What was used from `self` until `later`.
    pub(crate) fn until(&self, later: &CpuSample) -> CpuUse {
        let busy = later.machine_busy.saturating_sub(self.machine_busy) as f64;
        let total = later.machine_total.saturating_sub(self.machine_total) as f64;
        let mut servers_seconds = [0.0; 2];
        for (seconds, (before, after)) in servers_seconds
            .iter_mut()
            .zip(self.servers.iter().zip(later.servers))
        {
            *seconds = after.saturating_sub(*before) as f64 / TICKS_PER_SECOND;
        }
        CpuUse {
            busy_seconds: busy / TICKS_PER_SECOND,
            total_seconds: total / TICKS_PER_SECOND,
            servers_seconds,
        }
    }
}

/// The machine's busy and total ticks, from the first line of `/proc/stat`.
fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// User and system ticks of the server whose data folder is `data`: its postmaster (the first
/// line of `postmaster.pid`) and the processes it forked. A backend that exited between two
/// samples takes its ticks with it, so short-lived connections are undercounted; the pools
/// here keep theirs.
fn server_ticks(data: &Path) -> Option<u64> {
    let postmaster: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((parent, used)) = process_stat(pid) else {
            continue;
        };
        if pid == postmaster || parent == postmaster {
            ticks += used;
        }
    }
    Some(ticks)
}

/// User and system ticks the process `pid` has used so far; `None` when it is gone (or `/proc`
/// cannot tell).
pub(crate) fn process_ticks(pid: u32) -> Option<u64> {
    process_stat(pid).map(|(_, used)| used)
}

/// The parent and the user and system ticks of the process `pid`, from `/proc/<pid>/stat`.
fn process_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let parent: u32 = fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
    let user: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let system: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Some((parent, user + system))
}
