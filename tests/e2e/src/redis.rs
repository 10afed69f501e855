//! A private `redis-server` for the key-value tests: started on 127.0.0.1 and the first free
//! port of a range (28960-28969 unless `E2E_REDIS_PORTS=first-last` says otherwise), without
//! persistence, optionally with a password; stopped (its own process, by its pid) on drop.
//! Commands go through `redis-cli` (arguments passed as they are, no shell), bulk seeding
//! through `redis-cli --pipe` fed the RESP protocol.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    dir: PathBuf,
}

fn port_range() -> (u16, u16) {
    std::env::var("E2E_REDIS_PORTS")
        .ok()
        .and_then(|r| {
            let (a, b) = r.split_once('-')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .unwrap_or((28960, 28969))
}

/// One command in RESP.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).into_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl RedisServer {
    /// Starts a server (with `requirepass` when `password` is given).
    pub fn start(password: Option<&str>) -> RedisServer {
        let (first, last) = port_range();
        let port = (first..=last)
            .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .unwrap_or_else(|| panic!("no free port for redis-server in {first}-{last}"));
        let dir = std::env::temp_dir().join(format!("e2e_redis_{port}_{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server does not start ({e}): run scripts/setup.sh"));
        let server = RedisServer {
            child: Some(child),
            port,
            password: password.map(str::to_string),
            dir,
        };
        let started = Instant::now();
        while server
            .try_cmd(&["PING"])
            .map(|r| r.trim() != "PONG")
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {port} does not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `redis://[:password@]127.0.0.1:port/db`.
    pub fn url(&self, db: u32) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    fn cli(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            c.env("REDISCLI_AUTH", p);
        }
        c
    }

    /// One command through redis-cli (`--raw` output), or its failure.
    pub fn try_cmd(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .cli()
            .arg("--raw")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One command that must succeed.
    #[track_caller]
    pub fn cmd(&self, args: &[&str]) -> String {
        match self.try_cmd(args) {
            Ok(o) if !o.starts_with("ERR") && !o.starts_with("WRONGTYPE") => o,
            Ok(o) | Err(o) => panic!("redis-cli {args:?} failed: {o}"),
        }
    }

    /// Many commands in one `redis-cli --pipe`, each a list of arguments (binary-safe).
    #[track_caller]
    pub fn pipe(&self, commands: &[Vec<Vec<u8>>]) {
        let mut child = self
            .cli()
            .arg("--pipe")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-cli --pipe starts");
        {
            let stdin = child.stdin.as_mut().expect("stdin");
            for c in commands {
                let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
                stdin.write_all(&resp(&args)).expect("write to redis-cli");
            }
        }
        let out = child.wait_with_output().expect("redis-cli --pipe ends");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("errors: 0"),
            "redis-cli --pipe failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server now (SIGKILL of its own process).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A command's arguments as bytes, for [`RedisServer::pipe`].
pub fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
}
