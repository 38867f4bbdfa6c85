//! Cloning a site's repository: one shallow clone of the branch, by the host's `git`, over
//! HTTPS (a token in the URL) or SSH (the site's deploy key), with no hooks, no submodules, no
//! prompts, and the repository host checked like every outbound target (no loopback or private
//! address unless `--allow-private-targets`, which then also allows plain HTTP).

use super::Limits;
use crate::store::builds::DeployKey;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLONE_TIMEOUT: Duration = Duration::from_secs(300);

/// The credential a repository URL carries, to mask in the log: the password of
/// `https://user:token@…`, or the user of `https://token@…` (a token alone).
pub fn url_secrets(url: &str) -> Vec<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() != "ssh" => u
            .password()
            .or((!u.username().is_empty()).then(|| u.username()))
            .filter(|s| s.len() >= 8)
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The URL without its credentials, as the API shows it.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() && u.scheme() != "ssh" => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The host of a repository URL (`https://host/…`, `ssh://user@host:port/…` or `user@host:path`)
/// and whether it is SSH.
pub fn repo_host(url: &str, allow_private: bool) -> Result<(String, bool), String> {
    if let Ok(u) = reqwest::Url::parse(url) {
        let ssh = match u.scheme() {
            "https" => false,
            "http" if allow_private => false,
            "ssh" => true,
            other => {
                return Err(format!(
                    "the repository URL's scheme {other:?} is not supported: use https:// or SSH"
                ))
            }
        };
        let host = u.host_str().ok_or("the repository URL has no host")?;
        return Ok((host.trim_matches(['[', ']']).to_string(), ssh));
    }
    // scp-like: user@host:path
    if let Some((user_host, path)) = url.split_once(':') {
        if !path.is_empty() && !user_host.contains('/') {
            let host = user_host.rsplit('@').next().unwrap_or(user_host);
            if !host.is_empty() && !host.starts_with('-') {
                return Ok((host.to_string(), true));
            }
        }
    }
    Err("the repository URL must be https://host/path or an SSH URL (git@host:path)".into())
}

/// Refuses a repository on a loopback or private address (unless allowed).
fn check_host(host: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    use std::net::ToSocketAddrs;
    let addrs = (host, 443)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the repository host {host}: {e}"))?;
    for a in addrs {
        if crate::targets::is_private(a.ip()) {
            return Err(crate::targets::refused(host));
        }
    }
    Ok(())
}

/// A path relative to the checkout, without `..`.
pub fn relative(raw: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "the directory {raw:?} must not leave the repository"
                ))
            }
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

/// Clones `branch` of `url` into `work/repo`; returns the commit.
pub fn clone(
    url: &str,
    branch: &str,
    work: &Path,
    key: Option<&DeployKey>,
    allow_private: bool,
    limits: &Limits,
    mut line: impl FnMut(String),
) -> Result<String, String> {
    let (host, ssh) = repo_host(url, allow_private)?;
    check_host(&host, allow_private)?;
    let home = work.join("home");
    let mut protocols = "https:ssh".to_string();
    if allow_private {
        protocols.push_str(":http");
    }
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ALLOW_PROTOCOL", &protocols)
        .env("LANG", "C");
    if ssh {
        let key = key.ok_or("an SSH repository needs a deploy key (deploy_key_id)")?;
        let key_file = home.join("deploy_key");
        crate::files::write_private(&key_file, key.private_key.as_bytes())
            .map_err(|e| format!("cannot write the deploy key: {e}"))?;
        cmd.env(
            "GIT_SSH_COMMAND",
            format!(
                "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={} -o ConnectTimeout=15",
                key_file.display(),
                home.join("known_hosts").display()
            ),
        );
    }
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.file.allow=never",
        "clone",
        // (git's progress would name the server's own directories in the tenant's log)
        "--quiet",
        "--depth",
        "1",
        "--single-branch",
        "--no-tags",
        "--branch",
        branch,
        "--",
        url,
    ])
    .arg(work.join("repo"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    line(format!("Cloning {} (branch {branch})", shown_url(url)));
    let _ = std::fs::remove_dir_all(work.join("repo"));
    let mut child = cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(
                &mut std::io::Read::take(&mut e, 64 * 1024),
                &mut text,
            );
        }
        text
    });
    let started = Instant::now();
    let timeout = CLONE_TIMEOUT.min(limits.timeout);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if started.elapsed() > timeout
            || super::sandbox::dir_size(&work.join("repo"), limits.disk + 1) > limits.disk
        {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = reader.join().unwrap_or_default();
    for l in err.lines().filter(|l| !l.trim().is_empty()) {
        line(l.to_string());
    }
    match status {
        None => return Err("cloning the repository took too long or too much disk".into()),
        Some(s) if !s.success() => {
            return Err(format!(
                "cannot clone the repository's branch {branch} (see the log)"
            ))
        }
        Some(_) => {}
    }
    let out = Command::new("git")
        .args(["-C"])
        .arg(work.join("repo"))
        .args(["rev-parse", "HEAD"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &home)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || sha.is_empty() {
        return Err("cannot read the commit checked out".into());
    }
    // The checkout's own git data is not the build's business.
    let _ = std::fs::remove_dir_all(work.join("repo/.git"));
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls() {
        assert_eq!(
            repo_host("https://x:tok@git.example.com/a/b.git", false).unwrap(),
            ("git.example.com".into(), false)
        );
        assert_eq!(
            repo_host("git@github.com:acme/site.git", false).unwrap(),
            ("github.com".into(), true)
        );
        assert_eq!(
            repo_host("ssh://git@[::1]:2222/r.git", false).unwrap(),
            ("::1".into(), true)
        );
        assert!(repo_host("http://git.example.com/r.git", false).is_err());
        assert!(repo_host("http://127.0.0.1/r.git", true).is_ok());
        assert!(repo_host("file:///etc", true).is_err());
        assert!(repo_host("-oProxyCommand=x:y", false).is_err());
        assert_eq!(shown_url("https://x:tok@h/r.git"), "https://h/r.git");
        assert_eq!(
            url_secrets("https://x-access-token:abcdef123456@h/r"),
            vec!["abcdef123456"]
        );
        assert_eq!(
            url_secrets("https://ghp_abcdef123456@h/r"),
            vec!["ghp_abcdef123456"]
        );
        assert!(url_secrets("ssh://git@host/r").is_empty());
        assert!(relative("../x").is_err());
        assert_eq!(relative("./site//dist/").unwrap(), "site/dist");
    }
}
