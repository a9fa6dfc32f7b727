//! The kernel's CPU list format (`0-3,8,10-11`), as in `cpuset.cpus` and Docker's `CpusetCpus`.

use crate::error::{Error, Result};

/// The largest CPU id accepted when parsing, far above any real machine; it keeps a corrupt
/// range such as `0-4294967295` from allocating a huge list.
const MAX_CPU_ID: u32 = 1 << 16;

/// Parses a CPU list such as `0-3,8,10-11` into sorted, distinct ids. An empty (or blank) list
/// is empty; `field` names the input in errors.
///
/// ```
/// use bai_agent_runtime::resources::parse_cpu_list;
///
/// assert_eq!(parse_cpu_list("cpuset.cpus", "0-2,8\n")?, vec![0, 1, 2, 8]);
/// assert!(parse_cpu_list("cpuset.cpus", "3-1").is_err());
/// # Ok::<(), bai_agent_runtime::Error>(())
/// ```
pub fn parse_cpu_list(field: &str, text: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for part in text.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |reason: &str| Error::invalid(field, format!("{part:?} in CPU list {text:?}: {reason}"));
        let parse = |s: &str| -> Result<u32> {
            let id: u32 = s.trim().parse().map_err(|_| bad("expected a CPU id or a range like 0-3"))?;
            if id > MAX_CPU_ID {
                return Err(bad("CPU id out of range"));
            }
            Ok(id)
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(bad("the range's start is above its end"));
                }
                ids.extend(lo..=hi);
            }
            None => ids.push(parse(part)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Formats CPU ids as the kernel's list, merging runs: `[0, 1, 4, 5, 6, 9]` → `0-1,4-6,9`.
/// The ids need not be sorted; duplicates are ignored.
///
/// ```
/// use bai_agent_runtime::resources::format_cpu_list;
///
/// assert_eq!(format_cpu_list(&[4, 0, 1, 6, 5]), "0-1,4-6");
/// ```
pub fn format_cpu_list(ids: &[u32]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek().is_some_and(|&next| Some(next) == end.checked_add(1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        for text in ["0", "0-3", "0-1,4-6,9", "2,4,6", ""] {
            let ids = parse_cpu_list("t", text).unwrap();
            assert_eq!(format_cpu_list(&ids), text);
        }
        assert_eq!(parse_cpu_list("t", " 1 , 0-1 ,\n").unwrap(), vec![0, 1]);
    }

    #[test]
    fn bad_lists_name_the_field() {
        for text in ["a", "1-", "3-1", "0-99999999", "1--2"] {
            let err = parse_cpu_list("cpuset.cpus", text).unwrap_err().to_string();
            assert!(err.starts_with("invalid cpuset.cpus:"), "{err}");
        }
    }
}
