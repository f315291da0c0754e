//! CPU lists as people write them (`0`, `1`, `0-3`, `0,2-3`) and pinning a process to one before it
//! starts (`sched_setaffinity` between fork and exec: no `taskset` needed).

use std::fmt;
use std::process::Command;
use std::str::FromStr;

/// Highest CPU number a list may hold, plus one (the size of the kernel's `cpu_set_t`).
const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

/// A non-empty set of CPU numbers, in increasing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<CpuList, String> {
        let number = |t: &str| -> Result<usize, String> {
            let n: usize = t
                .trim()
                .parse()
                .map_err(|_| format!("{t:?} is not a CPU number"))?;
            if n >= MAX_CPUS {
                return Err(format!("CPU {n} is out of range (0 to {})", MAX_CPUS - 1));
            }
            Ok(n)
        };
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!(
                    "{s:?}: an empty entry (write e.g. 0, 0-3 or 0,2-3)"
                ));
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    if a > b {
                        return Err(format!("{part:?}: the range goes backwards"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(number(part)?),
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    /// The compact form: ranges of three or more as `a-b` (`0-3,5,7-9`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < self.0.len() {
            let mut j = i;
            while j + 1 < self.0.len() && self.0[j + 1] == self.0[j] + 1 {
                j += 1;
            }
            match j - i {
                0 => parts.push(self.0[i].to_string()),
                1 => parts.push(format!("{},{}", self.0[i], self.0[j])),
                _ => parts.push(format!("{}-{}", self.0[i], self.0[j])),
            }
            i = j + 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl CpuList {
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs this process may run on.
    pub fn allowed() -> Option<CpuList> {
        // SAFETY: a zeroed cpu_set_t is an empty set; the kernel writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let ok = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
        };
        if !ok {
            return None;
        }
        // SAFETY: reading bits of an initialised set.
        let cpus: Vec<usize> = (0..MAX_CPUS)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        (!cpus.is_empty()).then_some(CpuList(cpus))
    }

    /// Why this list cannot be used here (a CPU this process may not run on), if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        let allowed = CpuList::allowed()?;
        let missing: Vec<String> = self
            .0
            .iter()
            .filter(|c| !allowed.0.contains(c))
            .map(|c| c.to_string())
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "CPU {} is not available here (this process may use {allowed})",
                missing.join(", ")
            )
        })
    }

    /// Makes the process `command` starts run on these CPUs only (and whatever it execs, such as the
    /// program `ip netns exec` runs).
    pub fn pin(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: a zeroed cpu_set_t is an empty set, and CPU_SET stays within it (numbers are below
        // CPU_SETSIZE).
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.0 {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        // SAFETY: the closure only makes one system call (async-signal-safe) on a set built before the
        // fork.
        unsafe {
            command.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Pins `command` to `cpus` when there is a list.
pub fn pin(command: &mut Command, cpus: Option<&CpuList>) {
    if let Some(c) = cpus {
        c.pin(command);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Result<Vec<usize>, String> {
        s.parse::<CpuList>().map(|l| l.0)
    }

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(list("0"), Ok(vec![0]));
        assert_eq!(list("1"), Ok(vec![1]));
        assert_eq!(list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(list(" 3, 1 ,1-2"), Ok(vec![1, 2, 3]));
        assert_eq!(list("5-5"), Ok(vec![5]));
        for bad in ["", "a", "1,", ",1", "3-1", "-1", "1-", "0-x", "99999"] {
            assert!(list(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn prints_the_compact_form() {
        for (input, shown) in [
            ("0", "0"),
            ("0-3", "0-3"),
            ("0,1", "0,1"),
            ("3,0-1,5,7-9", "0,1,3,5,7-9"),
        ] {
            assert_eq!(input.parse::<CpuList>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn pins_a_child_process() {
        // The child reports the CPUs it may use: only the first one this process may use.
        let Some(allowed) = CpuList::allowed() else {
            return;
        };
        let first = CpuList(vec![allowed.cpus()[0]]);
        assert!(first.unavailable().is_none());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        first.pin(&mut cmd);
        let out = cmd.output().expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.split_whitespace().last() == Some(first.to_string().as_str()),
            "{text}"
        );
        assert!(CpuList(vec![MAX_CPUS - 1]).unavailable().is_some());
    }
}
