//! A small network lab for running Janus next to the client (tests and the benchmark's anchor).
//!
//! Janus refuses the loopback interface for ICE, so it runs in a network namespace of its own whose only
//! interface is one end of a veth pair carrying `127.0.0.2/32`; the other end, `127.0.0.3/32`, sits in a
//! second namespace where the client runs (`ip netns exec`). Loopback stays down in both, so those
//! addresses are routed over the veth (`route_localnet=1`) instead of being local. A server of any
//! kind (Janus, or parley for a like-for-like comparison) runs in the first namespace.
//!
//! Everything here needs root and `ip` (iproute2); [`unavailable`] says why a lab cannot be made.
//! [`NetLab`] and [`JanusServer`] clean up when dropped: the server is killed, its config directory
//! removed, and the namespaces deleted (with anything still running in them, which can only be what
//! was started there by the lab's owner).

use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cpus::{self, CpuList};

/// The server's address (in the server namespace).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The client's address (in the client namespace).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Janus's HTTP API port.
pub const JANUS_HTTP_PORT: u16 = 8088;

static LABS: AtomicU32 = AtomicU32::new(0);
static SERVERS: AtomicU32 = AtomicU32::new(0);

/// Why a lab cannot be made on this machine (not root, no `ip`), or `None` when it can.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output();
    match uid {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => {}
        Ok(_) => return Some("network namespaces need root".into()),
        Err(e) => return Some(format!("cannot run `id -u`: {e}")),
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is missing".into()),
    }
}

/// Janus's binary, if installed (`janus` on the PATH, or `/usr/bin/janus`).
pub fn janus_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("janus"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/janus");
        p.is_file().then_some(p)
    })
}

/// Runs `ip` with these arguments; fails with its error output.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Deletes a network namespace, first killing whatever still runs in it. Safe to call for a namespace
/// that does not exist.
pub fn remove_namespace(name: &str) {
    if let Ok(out) = Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Two network namespaces joined by a veth pair: `server_ns` holds [`SERVER_IP`], `client_ns` holds
/// [`CLIENT_IP`].
#[derive(Debug)]
pub struct NetLab {
    pub server_ns: String,
    pub client_ns: String,
    /// The veth end in the server namespace (Janus gathers candidates on it alone).
    pub server_if: String,
    pub client_if: String,
    /// CPUs that what runs in each namespace is pinned to (none: wherever the kernel puts it).
    pub server_cpus: Option<CpuList>,
    pub client_cpus: Option<CpuList>,
}

impl NetLab {
    /// Makes the namespaces and the link. Names carry the process id, so labs of different processes
    /// never meet.
    pub fn new() -> Result<NetLab> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        let id = format!(
            "{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        // Interface names have at most 15 characters.
        let lab = NetLab {
            server_ns: format!("pls{id}"),
            client_ns: format!("plc{id}"),
            server_if: format!("pls{id}"),
            client_if: format!("plc{id}"),
            server_cpus: None,
            client_cpus: None,
        };
        // Leftovers of a process that had our pid.
        remove_namespace(&lab.server_ns);
        remove_namespace(&lab.client_ns);
        // From here on, dropping `lab` cleans up whatever was made.
        lab.setup()?;
        Ok(lab)
    }

    fn setup(&self) -> Result<()> {
        ip(&["netns", "add", &self.server_ns])?;
        ip(&["netns", "add", &self.client_ns])?;
        ip(&[
            "link",
            "add",
            &self.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.client_if,
        ])?;
        ip(&["link", "set", &self.server_if, "netns", &self.server_ns])?;
        ip(&["link", "set", &self.client_if, "netns", &self.client_ns])?;
        for (ns, dev, addr, peer) in [
            (&self.server_ns, &self.server_if, SERVER_IP, CLIENT_IP),
            (&self.client_ns, &self.client_if, CLIENT_IP, SERVER_IP),
        ] {
            // 127/8 on an interface other than lo: allowed with route_localnet, and no reverse-path
            // filter in the way.
            let mut settings = Vec::new();
            for scope in ["all", "default", dev.as_str()] {
                settings.push(format!("net.ipv4.conf.{scope}.route_localnet=1"));
                settings.push(format!("net.ipv4.conf.{scope}.rp_filter=0"));
            }
            let mut sysctl = Command::new("ip");
            sysctl.args(["netns", "exec", ns, "sysctl", "-qw"]);
            sysctl.args(&settings);
            let out = sysctl.output().context("running sysctl")?;
            if !out.status.success() {
                bail!(
                    "sysctl in {ns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            ip(&["-n", ns, "addr", "add", &format!("{addr}/32"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "route", "add", &format!("{peer}/32"), "dev", dev])?;
        }
        Ok(())
    }

    /// A command that runs `program` in the server namespace (on [`NetLab::server_cpus`]).
    pub fn server_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = netns_command(&self.server_ns, program);
        cpus::pin(&mut c, self.server_cpus.as_ref());
        c
    }

    /// A command that runs `program` in the client namespace (on [`NetLab::client_cpus`]).
    pub fn client_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = netns_command(&self.client_ns, program);
        cpus::pin(&mut c, self.client_cpus.as_ref());
        c
    }
}

fn netns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    // `ip netns exec` execs the program: its pid is the program's.
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

impl Drop for NetLab {
    fn drop(&mut self) {
        remove_namespace(&self.server_ns);
        remove_namespace(&self.client_ns);
    }
}

/// Packets sent so far on interface `dev` of the network namespace process `pid` is in.
pub fn tx_packets(pid: u32, dev: &str) -> Option<u64> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{dev}:")))?;
    // "dev: rx_bytes rx_packets (6 more rx fields) tx_bytes tx_packets ..."
    let fields: Vec<&str> = line.split(':').nth(1)?.split_whitespace().collect();
    fields.get(9)?.parse().ok()
}

/// Whether something listens on TCP `addr:port` in the network namespace of process `pid`.
pub fn tcp_listening(pid: u32, addr: Ipv4Addr, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let exact = format!("{:08X}:{port:04X}", u32::from_le_bytes(addr.octets()));
    let any = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && (f[1] == exact || f[1] == any) && f[3] == "0A"
    })
}

/// Janus running in a lab's server namespace with a configuration of our own (videoroom plugin and HTTP
/// transport only; ICE on the veth only, no STUN, half-trickle). Killed when dropped.
pub struct JanusServer {
    child: Child,
    dir: PathBuf,
    /// Its HTTP API, e.g. `http://127.0.0.2:8088/janus`.
    pub url: String,
}

impl JanusServer {
    /// Writes the configuration to a fresh temporary directory, starts Janus and waits until its HTTP
    /// API listens. `event_loops`: Janus's `event_loops` setting (0: Janus's default, a thread per
    /// handle).
    pub fn start(lab: &NetLab, event_loops: u32) -> Result<JanusServer> {
        let binary = janus_binary().context("janus is not installed (apt-get install janus)")?;
        let dir = std::env::temp_dir().join(format!(
            "parley-janus-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_config(&dir, &lab.server_if, event_loops)?;
        let log = File::create(dir.join("janus.log")).context("creating janus.log")?;
        let log_err = log.try_clone().context("janus.log")?;
        let spawned = lab
            .server_command(&binary)
            .arg("-F")
            .arg(&dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).context("starting janus");
            }
        };
        let mut server = JanusServer {
            child,
            dir,
            url: format!("http://{SERVER_IP}:{JANUS_HTTP_PORT}/janus"),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tcp_listening(server.pid(), SERVER_IP, JANUS_HTTP_PORT) {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("janus exited ({status}):\n{}", server.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!(
                    "janus did not open its HTTP API within 15 s:\n{}",
                    server.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Janus's process id (for CPU and memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of Janus's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The configuration directory (it holds `janus.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Janus's folders as Debian installs them.
fn janus_lib_dir() -> PathBuf {
    for d in [
        "/usr/lib/x86_64-linux-gnu/janus",
        "/usr/lib/aarch64-linux-gnu/janus",
        "/usr/lib/janus",
        "/usr/local/lib/janus",
        "/opt/janus/lib/janus",
    ] {
        if Path::new(d).join("plugins").is_dir() {
            return PathBuf::from(d);
        }
    }
    PathBuf::from("/usr/lib/x86_64-linux-gnu/janus")
}

/// Every `.so` in `dir` except `keep`, comma-separated (for the `disable` settings).
fn others(dir: &Path, keep: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".so") && n != keep)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(",")
}

fn write_config(dir: &Path, interface: &str, event_loops: u32) -> Result<()> {
    let lib = janus_lib_dir();
    let loops = if event_loops > 0 {
        format!("\tevent_loops = {event_loops}\n")
    } else {
        String::new()
    };
    let janus = format!(
        "general: {{\n\
         \tconfigs_folder = \"{dir}\"\n\
         \tplugins_folder = \"{lib}/plugins\"\n\
         \ttransports_folder = \"{lib}/transports\"\n\
         \tevents_folder = \"{lib}/events\"\n\
         \tloggers_folder = \"{lib}/loggers\"\n\
         \tdebug_level = 3\n\
         \tinterface = \"{SERVER_IP}\"\n\
         \tsession_timeout = 60\n\
         {loops}}}\n\
         certificates: {{\n}}\n\
         media: {{\n\
         \trtp_port_range = \"20000-60000\"\n\
         }}\n\
         nat: {{\n\
         \tnice_debug = false\n\
         \tfull_trickle = false\n\
         \tice_lite = false\n\
         \tice_tcp = false\n\
         \tignore_mdns = true\n\
         \tice_enforce_list = \"{interface}\"\n\
         }}\n\
         plugins: {{\n\tdisable = \"{plugins}\"\n}}\n\
         transports: {{\n\tdisable = \"{transports}\"\n}}\n\
         loggers: {{\n\tdisable = \"{loggers}\"\n}}\n\
         events: {{\n\tbroadcast = false\n\tdisable = \"{events}\"\n}}\n",
        dir = dir.display(),
        lib = lib.display(),
        plugins = others(&lib.join("plugins"), "libjanus_videoroom.so"),
        transports = others(&lib.join("transports"), "libjanus_http.so"),
        loggers = others(&lib.join("loggers"), ""),
        events = others(&lib.join("events"), ""),
    );
    let http = format!(
        "general: {{\n\
         \tjson = \"compact\"\n\
         \tbase_path = \"/janus\"\n\
         \thttp = true\n\
         \tport = {JANUS_HTTP_PORT}\n\
         \tip = \"{SERVER_IP}\"\n\
         \thttps = false\n\
         }}\n\
         admin: {{\n\tadmin_http = false\n\tadmin_https = false\n}}\n\
         cors: {{\n}}\n"
    );
    let videoroom = "general: {\n}\n";
    for (name, text) in [
        ("janus.jcfg", janus.as_str()),
        ("janus.transport.http.jcfg", http.as_str()),
        ("janus.plugin.videoroom.jcfg", videoroom),
    ] {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_in_proc_format() {
        // 127.0.0.2 is 0x0200007F in /proc's little-endian hex.
        let exact = format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(SERVER_IP.octets()),
            JANUS_HTTP_PORT
        );
        assert_eq!(exact, "0200007F:1F98");
    }
}
