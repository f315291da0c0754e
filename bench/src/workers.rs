//! The media workers of a multi-worker parley (`parley --media-workers N`, a room per worker): how
//! evenly scenario (a) spreads over them, and what the split costs, as forwarded packets per server
//! CPU-second with one worker and with N in the same run.

use serde_json::Value;

use crate::{opt, Row};

/// How far a worker's CPU may be from the workers' mean, as a share of the mean, for a step's load to
/// count as evenly spread.
pub const SPREAD_TOLERANCE: f64 = 0.25;
/// The share of one worker's packets per CPU-second that N workers must keep.
pub const EFFICIENCY_TARGET: f64 = 0.95;
/// Below this mean CPU % per worker there is too little load to judge the spread.
const IDLE_PERCENT: f64 = 1.0;

/// Whether every worker's CPU is within `tolerance` (a share) of the workers' mean. `None`: fewer than
/// two workers, or too little load to tell.
pub fn balanced(cpu: &[f64], tolerance: f64) -> Option<bool> {
    if cpu.len() < 2 {
        return None;
    }
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    if mean < IDLE_PERCENT {
        return None;
    }
    Some(cpu.iter().all(|c| (c - mean).abs() <= tolerance * mean))
}

/// Per-worker CPU % for a table cell: `48/51%` (`–` when unknown).
pub fn percents(cpu: &[f64]) -> String {
    if cpu.is_empty() {
        return "–".into();
    }
    let each: Vec<String> = cpu.iter().map(|c| format!("{c:.0}")).collect();
    format!("{}%", each.join("/"))
}

/// Rooms with people on each worker, from `/api/status` (`{"rooms": [{"worker": 0, "participants":
/// [..]}, ..]}`); empty when the server does not say.
pub fn rooms_per_worker(status: &Value, workers: usize) -> Vec<usize> {
    let mut counts = vec![0; workers];
    let Some(rooms) = status.get("rooms").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut any = false;
    for r in rooms {
        let people = r
            .get("participants")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        let Some(w) = r.get("worker").and_then(Value::as_u64) else {
            continue;
        };
        if !people {
            continue;
        }
        let w = w as usize;
        if w >= counts.len() {
            counts.resize(w + 1, 0);
        }
        counts[w] += 1;
        any = true;
    }
    if any {
        counts
    } else {
        Vec::new()
    }
}

/// The line under the main table: scenario (a)'s steps with at least as many rooms as workers, each
/// with its per-worker CPU and whether it is within ±25% of the mean.
pub fn balance_summary(rows: &[Row]) -> String {
    let (judged, uneven) = spread(rows);
    if judged.is_empty() {
        return String::new();
    }
    format!(
        "\n**Spread over the media workers (scenario (a), steps with at least as many rooms as \
         workers; each worker's CPU against the workers' mean):** {}. {}\n",
        judged.join("; "),
        verdict(&uneven)
    )
}

fn verdict(uneven: &[String]) -> String {
    if uneven.is_empty() {
        "Every such step is evenly spread.".to_string()
    } else {
        format!("Unevenly spread: {}.", uneven.join(", "))
    }
}

/// For each scenario (a) row with at least as many rooms as workers: "step CPU, rooms: verdict"; and
/// the steps that are not evenly spread.
fn spread(rows: &[Row]) -> (Vec<String>, Vec<String>) {
    let mut judged = Vec::new();
    let mut uneven = Vec::new();
    for r in rows.iter().filter(|r| r.scenario.starts_with("a-")) {
        let workers = r.worker_cpu.len();
        if workers < 2 || r.rooms < workers {
            continue;
        }
        let rooms = if r.rooms_per_worker.is_empty() {
            String::new()
        } else {
            let each: Vec<String> = r.rooms_per_worker.iter().map(|n| n.to_string()).collect();
            format!(", rooms {}", each.join("/"))
        };
        let verdict = match balanced(&r.worker_cpu, SPREAD_TOLERANCE) {
            Some(true) => "within ±25%",
            Some(false) => {
                uneven.push(r.step.clone());
                "**not** within ±25%"
            }
            None => "too little load to judge",
        };
        judged.push(format!(
            "{} {}{rooms}: {verdict}",
            r.step,
            percents(&r.worker_cpu)
        ));
    }
    (judged, uneven)
}

/// Forwarded packets per server CPU-second of the best of some runs of one step: other processes on the
/// machine can only ever add CPU time to a run, so the best one is the least disturbed.
pub fn packets_per_cpu_second(rows: &[Row]) -> Option<f64> {
    rates(rows).into_iter().reduce(f64::max)
}

/// The median of some runs' forwarded packets per server CPU-second. This is what the comparison
/// judges: one lucky run sets the best of a single busy thread more easily than the best of several
/// threads' summed noise, so the best runs lean toward one worker.
pub fn median_packets_per_cpu_second(rows: &[Row]) -> Option<f64> {
    let mut rates = rates(rows);
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    Some(if rates.len() % 2 == 1 {
        rates[mid]
    } else {
        (rates[mid - 1] + rates[mid]) / 2.0
    })
}

fn rates(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| r.pps_per_core)
        .filter(|p| p.is_finite() && *p > 0.0)
        .collect()
}

/// The 1-worker vs N-worker runs of one step.
pub struct Comparison {
    pub workers: usize,
    pub step: String,
    pub rooms: usize,
    /// How the runs were made ("12 s per step; server on CPU 0, …").
    pub conditions: String,
    /// In the order they ran (alternating 1 and N).
    pub one: Vec<Row>,
    pub many: Vec<Row>,
}

impl Comparison {
    /// N workers' median packets per CPU-second as a share of one worker's: the verdict.
    pub fn ratio(&self) -> Option<f64> {
        Some(median_packets_per_cpu_second(&self.many)? / median_packets_per_cpu_second(&self.one)?)
    }

    /// The same share between the best run of each.
    pub fn best_ratio(&self) -> Option<f64> {
        Some(packets_per_cpu_second(&self.many)? / packets_per_cpu_second(&self.one)?)
    }

    /// The section for `results.md`.
    pub fn markdown(&self) -> String {
        let n = self.workers;
        let mut md = format!("\n## Media workers: 1 vs {n}\n\n");
        md.push_str(&format!(
            "parley's media plane is N worker threads (`--media-workers N`, one per core by default), \
             each with its own UDP port and the rooms placed on it; the main table ran with {n}. Below, \
             one step of scenario (a) ({} audio rooms of 10) ran on fresh servers with **1** worker and \
             with **{n}**, alternating, {} time(s) each ({}). \
             \"fwd pkt/s per core\" is forwarded packets per second of the **whole** server's CPU (every \
             thread: workers, control plane, signalling), so the comparison says what splitting the \
             media plane costs in total work; the split must keep at least {:.0}% of one worker's \
             packets per CPU-second, comparing the median runs (runs vary by about ±10%; the best run \
             of each is shown too, but a single lucky run of one busy thread sets it more easily than \
             the summed noise of several threads). \"server CPU % per worker\" is each `parley-media-i` \
             thread's user + system time over the measurement window.\n\n",
            self.rooms,
            self.one.len().max(self.many.len()),
            self.conditions,
            100.0 * EFFICIENCY_TARGET,
        ));
        let header: Vec<&str> = Row::COLUMNS.iter().map(|(title, _)| *title).collect();
        md.push_str(&format!("| {} |\n", header.join(" | ")));
        md.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for r in self.one.iter().chain(&self.many) {
            md.push_str(&format!("| {} |\n", r.cells().join(" | ")));
        }
        let one = median_packets_per_cpu_second(&self.one);
        let many = median_packets_per_cpu_second(&self.many);
        let target = match self.ratio() {
            Some(r) if r >= EFFICIENCY_TARGET => "met".to_string(),
            Some(_) => "**not met**".to_string(),
            None => "not measured".to_string(),
        };
        md.push_str(&format!(
            "\n**Forwarded packets per server CPU-second at {} (median run of each):** 1 worker {}, \
             {n} workers {}: \
             **{}%** of one worker's (target ≥ {:.0}%: {target}). Best run of each: 1 worker {}, {n} \
             workers {}: {}%.\n",
            self.step,
            opt(one, 0),
            opt(many, 0),
            opt(self.ratio().map(|r| 100.0 * r), 0),
            100.0 * EFFICIENCY_TARGET,
            opt(packets_per_cpu_second(&self.one), 0),
            opt(packets_per_cpu_second(&self.many), 0),
            opt(self.best_ratio().map(|r| 100.0 * r), 0),
        ));
        let (judged, uneven) = spread(&self.many);
        if !judged.is_empty() {
            md.push_str(&format!(
                "\n**Spread over the {n} workers in these runs (±25% of the mean):** {}. {}\n",
                judged.join("; "),
                verdict(&uneven)
            ));
        }
        md
    }

    /// Rows for `results.csv`, the scenario prefixed with `workers:`.
    pub fn csv_rows(&self) -> String {
        let mut csv = String::new();
        for r in self.one.iter().chain(&self.many) {
            let mut cells = r.cells();
            cells[0] = format!("workers:{}", cells[0]);
            csv.push_str(&(cells.join(",") + "\n"));
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pps_per_core: f64, worker_cpu: Vec<f64>) -> Row {
        Row {
            scenario: "a-audio-rooms-of-10",
            step: "8x10".into(),
            rooms: 8,
            workers: Some(worker_cpu.len()),
            participants: 80,
            connected: 80,
            streams: 720,
            streams_expected: 720,
            loss_percent: 0.0,
            forwarded_pps: 17_000.0,
            server_cpu_percent: 17_000.0 / pps_per_core * 100.0,
            worker_cpu,
            rooms_per_worker: vec![4, 4],
            client_cpu_percent: 30.0,
            pps_per_core,
            cpu_per_100_audio_streams: Some(2.0),
            rss_per_participant_kib: 300.0,
            latency_p50: Some(0.3),
            latency_p99: Some(1.0),
            join_p50: Some(50.0),
            join_p99: Some(300.0),
            own_media: 0,
        }
    }

    #[test]
    fn one_against_n_workers() {
        let cmp = Comparison {
            workers: 2,
            step: "8x10".into(),
            rooms: 8,
            conditions: "12 s per step".into(),
            // One lucky run of 1 worker sets its best, not its median.
            one: vec![
                run(100_000.0, vec![14.0]),
                run(130_000.0, vec![11.0]),
                run(98_000.0, vec![15.0]),
            ],
            // The third run of 2 was disturbed: the median does not follow it.
            many: vec![
                run(97_000.0, vec![8.0, 8.0]),
                run(99_000.0, vec![8.0, 8.0]),
                run(70_000.0, vec![6.0, 14.0]),
            ],
        };
        assert_eq!(cmp.ratio().map(|r| (r * 100.0).round()), Some(97.0));
        assert_eq!(cmp.best_ratio().map(|r| (r * 100.0).round()), Some(76.0));
        let md = cmp.markdown();
        assert!(md.contains("## Media workers: 1 vs 2"), "{md}");
        assert!(
            md.contains(
                "1 worker 100000, 2 workers 97000: **97%** of one worker's (target ≥ 95%: met). \
                 Best run of each: 1 worker 130000, 2 workers 99000: 76%."
            ),
            "{md}"
        );
        assert!(md.contains("Unevenly spread: 8x10."), "{md}");
        assert_eq!(cmp.csv_rows().lines().count(), 6);
        assert!(cmp
            .csv_rows()
            .starts_with("workers:a-audio-rooms-of-10,8x10,1,"));
    }

    #[test]
    fn spread_within_a_quarter_of_the_mean() {
        // Mean 50: 38 to 62 is within ±25%.
        assert_eq!(balanced(&[48.0, 52.0], SPREAD_TOLERANCE), Some(true));
        assert_eq!(balanced(&[38.0, 62.0], SPREAD_TOLERANCE), Some(true));
        assert_eq!(balanced(&[37.0, 63.0], SPREAD_TOLERANCE), Some(false));
        // One busy worker, one idle: everything on one.
        assert_eq!(balanced(&[90.0, 0.0], SPREAD_TOLERANCE), Some(false));
        assert_eq!(
            balanced(&[30.0, 30.0, 30.0, 45.0], SPREAD_TOLERANCE),
            Some(false)
        );
        assert_eq!(
            balanced(&[30.0, 30.0, 30.0, 40.0], SPREAD_TOLERANCE),
            Some(true)
        );
        // Nothing to judge.
        assert_eq!(balanced(&[50.0], SPREAD_TOLERANCE), None);
        assert_eq!(balanced(&[], SPREAD_TOLERANCE), None);
        assert_eq!(balanced(&[0.2, 0.1], SPREAD_TOLERANCE), None);
        assert_eq!(percents(&[48.4, 51.0]), "48/51%");
        assert_eq!(percents(&[]), "–");
    }

    #[test]
    fn rooms_per_worker_from_the_status() {
        let status = serde_json::json!({"rooms": [
            {"name": "a", "worker": 0, "participants": [{"id": 1}]},
            {"name": "b", "worker": 1, "participants": [{"id": 2}]},
            {"name": "c", "worker": 1, "participants": [{"id": 3}]},
            {"name": "General", "worker": 0, "participants": []},
        ]});
        assert_eq!(rooms_per_worker(&status, 2), vec![1, 2]);
        assert_eq!(rooms_per_worker(&status, 3), vec![1, 2, 0]);
        // A server that does not say.
        let old = serde_json::json!({"rooms": [{"name": "a", "participants": [{"id": 1}]}]});
        assert!(rooms_per_worker(&old, 2).is_empty());
    }
}
