//! What the machine is and what it is doing, read from `/proc`: the facts printed at the top of a
//! run, and the snapshots taken around every measured step (load averages, CPU time of this
//! process, of PostgreSQL and of the whole machine, peak resident memory).
//!
//! A benchmark on a shared 2-core machine is only as good as what it says about the machine's
//! other work, so every step carries the load before and after it and the CPU it and PostgreSQL
//! used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `getconf CLK_TCK`: the unit of CPU times in `/proc/*/stat` on every Linux the suite runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine, as the report's header describes it.
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown".to_owned(),
                |(_, model)| model.trim().to_owned(),
            );
        let memory_mib = status_kib("/proc/meminfo", "MemTotal:").unwrap_or(0) / 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_default();
        Self {
            cores: cores(),
            cpu_model,
            memory_mib,
            kernel,
        }
    }
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A `kB` field of a `/proc` status-like file.
fn status_kib(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Peak resident memory (`VmHWM`) of process `pid`, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_kib(&format!("/proc/{pid}/status"), "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// Starts a new peak-memory window for this process (Linux: writing 5 to `clear_refs` resets
/// `VmHWM` to the current resident size).
pub fn reset_own_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU times of one process, from `/proc/<pid>/stat`.
struct ProcessCpu {
    comm: String,
    /// User + system seconds of the process itself.
    own: f64,
    /// User + system seconds of its children that ended and were waited for.
    children: f64,
}

fn process_cpu(pid: &str) -> Option<ProcessCpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let fields: Vec<f64> = stat[close + 2..]
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|value| value.parse().ok())
        .collect();
    // Fields 14 to 17 of stat(5): utime, stime, cutime, cstime.
    let [utime, stime, cutime, cstime] = fields[..] else {
        return None;
    };
    Some(ProcessCpu {
        comm: stat[open + 1..close].to_owned(),
        own: (utime + stime) / TICKS_PER_SECOND,
        children: (cutime + cstime) / TICKS_PER_SECOND,
    })
}

/// CPU seconds process `pid` has used so far (itself, not its children).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    process_cpu(&pid.to_string()).map(|cpu| cpu.own)
}

/// The pid of a process on this machine whose command is `name` (`/proc/<pid>/comm`), if one
/// runs: a server the benchmark uses but did not start.
pub fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok()?.parse::<u32>().ok())
        .find(|pid| process_cpu(&pid.to_string()).is_some_and(|cpu| cpu.comm == name))
}

/// The PostgreSQL databases this run created: only their backends count as the benchmark's
/// PostgreSQL work, so other users of the same server show up as the machine's other load.
static WATCHED_DATABASES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Counts the backends of database `name` as this run's PostgreSQL work from now on.
pub fn watch_database(name: &str) {
    if let Ok(mut names) = WATCHED_DATABASES.lock() {
        names.push(name.to_owned());
    }
}

/// CPU seconds of each backend serving one of the watched databases, by pid. A backend's
/// command line is its title: `postgres: 15/main: <user> <database> <client> <state>`.
fn postgres_cpu_seconds() -> HashMap<u32, f64> {
    let names = WATCHED_DATABASES
        .lock()
        .map(|names| names.clone())
        .unwrap_or_default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cpu = process_cpu(&pid.to_string())?;
            if cpu.comm != "postgres" {
                return None;
            }
            let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            let ours = title
                .split_whitespace()
                .any(|word| names.iter().any(|name| name == word));
            ours.then_some((pid, cpu.own))
        })
        .collect()
}

/// Busy and total CPU seconds of the whole machine, from `/proc/stat`.
fn machine_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: f64 = values.iter().take(8).sum();
    // idle and iowait are the 4th and 5th values.
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    ((total - idle) / TICKS_PER_SECOND, total / TICKS_PER_SECOND)
}

/// The machine's state at one instant.
struct Snapshot {
    at: Instant,
    load: f64,
    own_cpu: f64,
    /// Of the other processes of the benchmark.
    extra_cpu: f64,
    machine_busy: f64,
    machine_total: f64,
}

impl Snapshot {
    fn take(extra: &[u32]) -> Self {
        let (machine_busy, machine_total) = machine_cpu_seconds();
        Self {
            at: Instant::now(),
            load: load_average(),
            own_cpu: process_cpu("self").map_or(0.0, |cpu| cpu.own + cpu.children),
            extra_cpu: extra
                .iter()
                .filter_map(|pid| process_cpu(&pid.to_string()))
                .map(|cpu| cpu.own)
                .sum(),
            machine_busy,
            machine_total,
        }
    }
}

/// Watches the machine while a step runs. PostgreSQL backends come and go with their
/// connections (pgbench opens its own), so they are sampled every 200 ms on a thread of their
/// own; a backend first seen during the step counts from zero.
pub struct Watch {
    before: Snapshot,
    extra: Vec<u32>,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<f64>,
}

impl Watch {
    /// Starts watching; `extra` are other processes of the benchmark (the servers of the
    /// bulk import) whose CPU counts as the benchmark's own.
    pub fn start(extra: &[u32]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let baseline = postgres_cpu_seconds();
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut last = baseline.clone();
                loop {
                    last.extend(postgres_cpu_seconds());
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                last.iter()
                    .map(|(pid, seconds)| seconds - baseline.get(pid).copied().unwrap_or(0.0))
                    .sum()
            })
        };
        Self {
            before: Snapshot::take(extra),
            extra: extra.to_vec(),
            stop,
            sampler,
        }
    }

    /// What the machine did since [`Watch::start`].
    pub fn stop(self) -> Usage {
        let after = Snapshot::take(&self.extra);
        self.stop.store(true, Ordering::Relaxed);
        let postgres = self.sampler.join().unwrap_or(0.0);
        let before = self.before;
        let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let machine_share = if after.machine_total > before.machine_total {
            (after.machine_busy - before.machine_busy)
                / (after.machine_total - before.machine_total)
        } else {
            0.0
        };
        let own_cores =
            (after.own_cpu - before.own_cpu + after.extra_cpu - before.extra_cpu) / wall;
        let postgres_cores = (postgres / wall).max(0.0);
        Usage {
            load_before: before.load,
            load_after: after.load,
            own_cores,
            postgres_cores,
            other_cores: (machine_share * cores() as f64 - own_cores - postgres_cores).max(0.0),
        }
    }
}

/// What happened on the machine while a step ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// 1-minute load average before and after.
    pub load_before: f64,
    pub load_after: f64,
    /// Cores used on average by this process (with the extra process and the tools it ran),
    /// by PostgreSQL for this run's databases, and by everything else on the machine.
    pub own_cores: f64,
    pub postgres_cores: f64,
    pub other_cores: f64,
}
