//! The third-party tools a run compares against: `pgbench` (PostgreSQL's own load generator)
//! and `h2load` (nghttp2's HTTP/2 load generator). Both run as child processes; their output is
//! parsed into the same shape as the load generator's.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::load::{Outcome, histogram};
use anyhow::{Context as _, bail};

/// True when `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The first line of `program --version`.
pub fn version(program: &str) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not installed".to_owned())
}

/// Runs `script` with pgbench against `database_url` at `clients` connections for
/// `warmup + duration` (prepared statements, as sqlx uses), and counts the transactions that
/// ended inside the measured window, from pgbench's per-transaction log.
pub async fn pgbench(
    database_url: &str,
    script: &str,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let script_path = dir.path().join("script.sql");
    std::fs::write(&script_path, script)?;
    let log_prefix = dir.path().join("txn");
    let threads = clients.min(crate::system::cores()).max(1);
    let seconds = (warmup + duration).as_secs().max(1);
    let launched = now_micros();
    let output = tokio::process::Command::new("pgbench")
        .args(["--no-vacuum", "--protocol=prepared", "--log"])
        .arg(format!("--log-prefix={}", log_prefix.display()))
        .arg(format!("--client={clients}"))
        .arg(format!("--jobs={threads}"))
        .arg(format!("--time={seconds}"))
        .arg(format!("--file={}", script_path.display()))
        .arg(database_url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbench")?;
    if !output.status.success() {
        bail!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let start = launched + warmup.as_micros() as u64;
    let end = start + duration.as_micros() as u64;
    let mut latency = histogram();
    let mut errors = 0;
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if !is_pgbench_log(&path) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            // client_id transaction_no time script_no time_epoch time_us
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(time), Some(epoch), Some(epoch_us)) =
                (fields.get(2), fields.get(4), fields.get(5))
            else {
                continue;
            };
            let finished = epoch.parse::<u64>().unwrap_or(0) * 1_000_000
                + epoch_us.parse::<u64>().unwrap_or(0);
            if finished < start || finished > end {
                continue;
            }
            match time.parse::<u64>() {
                Ok(micros) => latency.saturating_record(micros.max(1)),
                // "failed" or "skipped" in place of a latency.
                Err(_) => errors += 1,
            }
        }
    }
    Ok(Outcome {
        ok: latency.len(),
        errors,
        first_error: (errors > 0).then(|| "pgbench reported failed transactions".to_owned()),
        window: duration,
        latency,
    })
}

fn is_pgbench_log(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("txn."))
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// What h2load measured.
pub struct H2load {
    pub requests_per_second: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// Drives one gRPC unary method with h2load: `clients` connections with `streams` calls in
/// flight on each, for `warmup` then `duration`, every call carrying `message` (an encoded
/// protobuf) and `headers`. h2load sees HTTP statuses only: a gRPC error travels in the
/// trailers of an HTTP 200, so the caller checks the call once with a real client first.
pub async fn h2load(
    url: &str,
    message: &[u8],
    headers: &[(&str, &str)],
    clients: usize,
    streams: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<H2load> {
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("request.bin");
    // The gRPC frame: uncompressed flag, big-endian length, message.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    frame.extend_from_slice(message);
    std::fs::write(&body, frame)?;
    let mut command = tokio::process::Command::new("h2load");
    command
        .arg(format!("--clients={clients}"))
        .arg(format!("--max-concurrent-streams={streams}"))
        .arg(format!("--threads={}", crate::system::cores().min(clients)))
        .arg(format!("--warm-up-time={}", warmup.as_secs().max(1)))
        .arg(format!("--duration={}", duration.as_secs().max(1)))
        .arg(format!("--data={}", body.display()))
        .args(["--header", "content-type: application/grpc"])
        .args(["--header", "te: trailers"]);
    for (name, value) in headers {
        command.args(["--header", &format!("{name}: {value}")]);
    }
    let output = command
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running h2load")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("h2load failed: {}", text.trim());
    }
    parse_h2load(&text).with_context(|| format!("unexpected h2load output:\n{text}"))
}

fn parse_h2load(text: &str) -> Option<H2load> {
    // "finished in 10.00s, 12345.60 req/s, 1.23MB/s"
    let finished = text.lines().find(|line| line.starts_with("finished in"))?;
    let requests_per_second = finished
        .split(", ")
        .find(|part| part.ends_with("req/s"))?
        .trim_end_matches(" req/s")
        .parse()
        .ok()?;
    // "requests: 100 total, 100 started, 100 done, 99 succeeded, 1 failed, 0 errored, ..."
    let requests = text.lines().find(|line| line.starts_with("requests:"))?;
    let count = |label: &str| -> Option<u64> {
        requests
            .split(", ")
            .find(|part| part.ends_with(label))?
            .split_whitespace()
            .rev()
            .nth(1)?
            .parse()
            .ok()
    };
    let succeeded = count(" succeeded")?;
    let failed = count(" failed")? + count(" errored").unwrap_or(0);
    // "time for request:   123us   4.56ms   789us   100us   90.00%"  (min max mean sd ±sd)
    let timing = text
        .lines()
        .find(|line| line.starts_with("time for request:"))?;
    let values: Vec<f64> = timing
        .trim_start_matches("time for request:")
        .split_whitespace()
        .take(3)
        .map(milliseconds)
        .collect::<Option<_>>()?;
    Some(H2load {
        requests_per_second,
        succeeded,
        failed,
        max_ms: values[1],
        mean_ms: values[2],
    })
}

/// An h2load duration ("123us", "4.56ms", "1.2s") in milliseconds.
fn milliseconds(text: &str) -> Option<f64> {
    if let Some(value) = text.strip_suffix("us") {
        value.parse::<f64>().ok().map(|us| us / 1000.0)
    } else if let Some(value) = text.strip_suffix("ms") {
        value.parse().ok()
    } else {
        text.strip_suffix('s')?
            .parse::<f64>()
            .ok()
            .map(|s| s * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_summaries_are_read() {
        let text = "finished in 10.00s, 12345.60 req/s, 1.23MB/s\n\
                    requests: 123456 total, 123456 started, 123456 done, 123450 succeeded, 6 failed, 0 errored, 0 timeout\n\
                    time for request:      123us     45.60ms      1.50ms       200us    90.00%\n";
        let parsed = parse_h2load(text).unwrap();
        assert_eq!(parsed.requests_per_second, 12345.6);
        assert_eq!(parsed.succeeded, 123450);
        assert_eq!(parsed.failed, 6);
        assert_eq!(parsed.max_ms, 45.6);
        assert_eq!(parsed.mean_ms, 1.5);
    }
}
