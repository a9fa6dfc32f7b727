//! Parsers for the /proc files the collectors read: `net/dev`, `stat` and `meminfo`.
//!
//! Each takes the file's text and the path it came from (for error messages) and never panics:
//! a malformed number is an [`Error::Invalid`] naming the file.

use std::path::Path;

use crate::error::{Error, Result};

/// Parses one unsigned integer, naming `what` and the file when it is not one.
pub(crate) fn parse_u64(path: &Path, what: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    s.parse::<u64>().map_err(|_| {
        Error::invalid(path.display().to_string(), format!("{what}: expected an unsigned integer, found {s:?}"))
    })
}

/// Bytes received and sent, summed over every interface except `lo`.
pub(crate) fn parse_net_dev(path: &Path, text: &str) -> Result<(u64, u64)> {
    let (mut rx, mut tx) = (0u64, 0u64);
    // Two header lines, then `  name: rx_bytes rx_packets … (8 rx fields) tx_bytes …`.
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let mut fields = fields.split_whitespace();
        let rx_bytes = fields.next().ok_or_else(|| short_line(path, line))?;
        let tx_bytes = fields.nth(7).ok_or_else(|| short_line(path, line))?;
        rx = rx.saturating_add(parse_u64(path, "received bytes", rx_bytes)?);
        tx = tx.saturating_add(parse_u64(path, "sent bytes", tx_bytes)?);
    }
    Ok((rx, tx))
}

fn short_line(path: &Path, line: &str) -> Error {
    Error::invalid(path.display().to_string(), format!("expected 16 counters after the interface name in {line:?}"))
}

/// Busy and total time of one CPU (or of all of them), in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTime {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// The `cpu` line and the `cpuN` lines of `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// All CPUs together.
    pub all: CpuTime,
    /// Each CPU, as (`N` of `cpuN`, its time).
    pub per_cpu: Vec<(String, CpuTime)>,
}

/// Parses `/proc/stat`'s CPU lines (`guest` time is already inside `user`, so it is skipped).
pub(crate) fn parse_proc_stat(path: &Path, text: &str) -> Result<ProcStat> {
    let mut stat = ProcStat::default();
    let mut saw_all = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(index) = label.strip_prefix("cpu") else { continue };
        let mut v = [0u64; 8];
        for (i, slot) in v.iter_mut().enumerate() {
            // Old kernels print fewer columns; missing ones are zero.
            if let Some(f) = fields.next() {
                *slot = parse_u64(path, &format!("{label} column {}", i + 1), f)?;
            }
        }
        let [user, nice, system, idle, iowait, irq, softirq, steal] = v;
        let busy = user
            .saturating_add(nice)
            .saturating_add(system)
            .saturating_add(irq)
            .saturating_add(softirq)
            .saturating_add(steal);
        let time = CpuTime { busy, total: busy.saturating_add(idle).saturating_add(iowait) };
        if index.is_empty() {
            stat.all = time;
            saw_all = true;
        } else if index.bytes().all(|b| b.is_ascii_digit()) {
            stat.per_cpu.push((index.to_owned(), time));
        }
    }
    if !saw_all {
        return Err(Error::invalid(path.display().to_string(), "expected a 'cpu' line"));
    }
    Ok(stat)
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes (`MemFree + Buffers + Cached`
/// stands in for `MemAvailable` on kernels older than 3.14).
pub(crate) fn parse_meminfo(path: &Path, text: &str) -> Result<(u64, u64)> {
    let (mut total, mut available, mut fallback) = (None, None, 0u64);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let kib = || -> Result<u64> {
            let number = rest.split_whitespace().next().unwrap_or_default();
            Ok(parse_u64(path, key, number)?.saturating_mul(1024))
        };
        match key {
            "MemTotal" => total = Some(kib()?),
            "MemAvailable" => available = Some(kib()?),
            "MemFree" | "Buffers" | "Cached" => fallback = fallback.saturating_add(kib()?),
            _ => {}
        }
    }
    let total = total.ok_or_else(|| Error::invalid(path.display().to_string(), "expected a MemTotal line"))?;
    Ok((total, available.unwrap_or(fallback)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999     100    0    0    0     0          0         0   999999     100    0    0    0     0       0          0
  eth0: 1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  eth1:   24       1    0    0    0     0          0         0        6       1    0    0    0     0       0          0
";

    #[test]
    fn net_dev_sums_interfaces_but_lo() {
        assert_eq!(parse_net_dev(Path::new("net/dev"), NET_DEV).unwrap(), (1024, 2006));
        let bad = parse_net_dev(Path::new("net/dev"), "h\nh\neth0: 1 2 3\n").unwrap_err();
        assert!(bad.to_string().contains("expected 16 counters"), "{bad}");
        let bad = parse_net_dev(Path::new("net/dev"), "h\nh\neth0: x 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0\n").unwrap_err();
        assert!(bad.to_string().contains("received bytes"), "{bad}");
    }

    #[test]
    fn proc_stat_counts_busy_and_total() {
        let text =
            "cpu  10 1 5 100 4 1 1 2 3 0\ncpu0 5 0 2 50 2 0 0 1 0 0\ncpu1 5 1 3 50 2 1 1 1 0 0\nintr 1 2\nctxt 5\n";
        let stat = parse_proc_stat(Path::new("stat"), text).unwrap();
        assert_eq!(stat.all, CpuTime { busy: 20, total: 124 });
        assert_eq!(stat.per_cpu.len(), 2);
        assert_eq!(stat.per_cpu[1], ("1".to_owned(), CpuTime { busy: 12, total: 64 }));
        assert!(parse_proc_stat(Path::new("stat"), "intr 1\n").is_err());
        assert!(parse_proc_stat(Path::new("stat"), "cpu 1 x\n").is_err());
    }

    #[test]
    fn meminfo_reads_total_and_available() {
        let text = "MemTotal:       16000 kB\nMemFree:  1000 kB\nMemAvailable:   8000 kB\nBuffers: 10 kB\n";
        assert_eq!(parse_meminfo(Path::new("meminfo"), text).unwrap(), (16000 * 1024, 8000 * 1024));
        let old = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 1 kB\nCached: 5 kB\n";
        assert_eq!(parse_meminfo(Path::new("meminfo"), old).unwrap(), (100 * 1024, 16 * 1024));
        assert!(parse_meminfo(Path::new("meminfo"), "MemFree: 1 kB\n").is_err());
    }
}
