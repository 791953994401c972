//! The `proxy` scenario's reverse proxy: a real nginx (Debian's
//! `nginx-light`), started in a private directory on a free loopback port,
//! keeping idle connections to the upstream (`keepalive`), as Server::Starter
//! workers are usually deployed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{BoxError, TempDir, free_port, signal, stop_child, wait_listening};

/// How long nginx may take to start listening, or to stop.
const WAIT: Duration = Duration::from_secs(20);

/// nginx, running.
pub(super) struct Nginx {
    child: Child,
    pub(super) port: u16,
    _dir: TempDir,
}

/// Where Debian installs nginx.
fn program() -> Result<PathBuf, BoxError> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "the proxy scenario needs nginx (Debian package nginx-light)".into())
}

impl Nginx {
    /// Starts nginx in front of `127.0.0.1:upstream` and waits until it accepts connections.
    pub(super) fn start(upstream: u16) -> Result<Self, BoxError> {
        let program = program()?;
        let dir = TempDir::new()?;
        let port = free_port()?;
        for sub in ["client_body", "proxy"] {
            let path = dir.0.join(sub);
            std::fs::create_dir_all(&path)?;
            // Workers may run as another user (nobody) when started as root.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        }
        let config = config(&dir.0, port, upstream);
        let conf = dir.0.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let mut cmd = Command::new(&program);
        cmd.arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", program.display()))?;
        let mut nginx = Self {
            child,
            port,
            _dir: dir,
        };
        if !wait_listening(port, &mut nginx.child, Instant::now() + WAIT) {
            let log = std::fs::read_to_string(nginx._dir.0.join("error.log")).unwrap_or_default();
            return Err(format!("nginx did not start listening:\n{log}").into());
        }
        Ok(nginx)
    }

    /// Stops nginx gracefully (QUIT) and waits for it.
    pub(super) fn stop(mut self) -> Result<(), BoxError> {
        if !stop_child(&mut self.child, rustix::process::Signal::QUIT, WAIT)? {
            return Err("nginx did not stop".into());
        }
        Ok(())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), rustix::process::Signal::TERM);
            let _ = self.child.wait();
        }
    }
}

/// The configuration: a reverse proxy with keep-alive upstream connections.
fn config(dir: &Path, port: u16, upstream: u16) -> String {
    let dir = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}
