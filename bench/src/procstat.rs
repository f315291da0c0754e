//! CPU time and memory of a process (or of one of our own threads) from /proc.

use std::time::Duration;

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU time used so far by the process or task whose `stat` file is at `path`.
pub fn cpu_of_stat(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second(),
    ))
}

pub fn process_cpu(pid: u32) -> Option<Duration> {
    cpu_of_stat(&format!("/proc/{pid}/stat"))
}

/// The media worker index a thread name stands for: `parley-media-<i>` is worker i; a single
/// `parley-media` (a server with one media thread) is worker 0.
pub fn media_worker_index(comm: &str) -> Option<usize> {
    let comm = comm.trim_end();
    if comm == "parley-media" {
        return Some(0);
    }
    comm.strip_prefix("parley-media-")?.parse().ok()
}

/// CPU time used so far by each of process `pid`'s media worker threads, by worker index (from
/// `/proc/PID/task/*/stat`, utime + stime); empty when it has none (or is not parley).
pub fn media_threads_cpu(pid: u32) -> Vec<(usize, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<(usize, Duration)> = tasks
        .flatten()
        .filter_map(|t| {
            let dir = t.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let index = media_worker_index(&comm)?;
            let cpu = cpu_of_stat(dir.join("stat").to_str()?)?;
            Some((index, cpu))
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out
}

/// Each worker's CPU % (of one core) between two [`media_threads_cpu`] samples `wall` seconds apart,
/// in worker order (a worker missing from either sample is left out).
pub fn media_workers_percent(
    before: &[(usize, Duration)],
    after: &[(usize, Duration)],
    wall: f64,
) -> Vec<f64> {
    after
        .iter()
        .filter_map(|(i, t1)| {
            let (_, t0) = before.iter().find(|(j, _)| j == i)?;
            Some(100.0 * t1.saturating_sub(*t0).as_secs_f64() / wall.max(1e-9))
        })
        .collect()
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Resident memory in bytes.
pub fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every 200 ms on a thread of its own, keeping the peak.
pub struct PeakRss {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    /// Starts sampling `pid`; the peak is at least `floor`.
    pub fn watch(pid: u32, floor: u64) -> PeakRss {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = floor;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(r) = process_rss(pid) {
                        peak = peak.max(r);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                peak
            })
        };
        PeakRss { stop, sampler }
    }

    /// Stops sampling and returns the peak, bytes.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_worker_threads_by_name() {
        assert_eq!(media_worker_index("parley-media-0\n"), Some(0));
        assert_eq!(media_worker_index("parley-media-11"), Some(11));
        assert_eq!(media_worker_index("parley-media"), Some(0));
        assert_eq!(media_worker_index("parley-store"), None);
        assert_eq!(media_worker_index("parley-media-x"), None);
        assert_eq!(media_worker_index("tokio-runtime-w"), None);
        let s = |ms: u64| Duration::from_millis(ms);
        let before = [(0, s(1000)), (1, s(500))];
        let after = [(0, s(1500)), (1, s(1000)), (2, s(100))];
        assert_eq!(
            media_workers_percent(&before, &after, 2.0),
            vec![25.0, 25.0]
        );
    }
}
