//! A real Dovecot IMAP server (Debian's `dovecot-imapd`) for the mailbox
//! tests and bench: a throwaway instance on loopback with its own config
//! directory, passwd-file users, Maildirs the caller fills, TLS from a CA
//! made here, and optionally OAuth2 sign-in checked against an
//! introspection URL the caller serves (Dovecot's oauth2 passdb, offline).
//!
//! Run as root (CI containers), Dovecot's login processes drop to
//! `dovenull` and mail is accessed as `dovecot`; otherwise everything runs
//! as the current user.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// Where Debian installs the server.
pub const DOVECOT_BINARY: &str = "/usr/sbin/dovecot";

/// How to set a test server up.
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// (user, password) pairs.
    pub users: Vec<(String, String)>,
    /// Accept XOAUTH2 and OAUTHBEARER, asking this URL (RFC 7662 token
    /// introspection, POST) whether a token is valid and whose it is.
    pub oauth_introspection_url: Option<String>,
    /// A quota on each user's mail, in KiB (the quota plugin).
    pub quota_kib: Option<u64>,
}

pub struct Dovecot {
    /// Config, certificates, mail and logs; removed when the server stops.
    dir: PathBuf,
    child: Child,
    /// Plain IMAP (STARTTLS offered).
    pub port: u16,
    /// Implicit TLS.
    pub tls_port: u16,
    /// The test CA's certificate (PEM), for a mailbox's `ca_file`.
    pub ca_file: PathBuf,
    owner: Option<(u32, u32)>,
}

static DELIVERED: AtomicU64 = AtomicU64::new(0);

impl Dovecot {
    /// Whether the server is installed here.
    pub fn installed() -> bool {
        Path::new(DOVECOT_BINARY).exists()
    }

    /// Starts a server and waits until it greets.
    pub fn start(options: DovecotOptions) -> std::io::Result<Dovecot> {
        let root = std::env::temp_dir().join(format!(
            "dmarcd-dovecot-{}-{}",
            std::process::id(),
            DELIVERED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        set_mode(&root, 0o755)?;
        let ca_file = root.join("ca.pem");
        let (cert, key) = certificates(&ca_file)?;
        std::fs::write(root.join("cert.pem"), cert)?;
        std::fs::write(root.join("key.pem"), key)?;
        set_mode(&root.join("key.pem"), 0o600)?;
        let owner = running_as_root().then(|| user_ids("dovecot")).flatten();
        let mut passwd = String::new();
        for (user, password) in &options.users {
            let home = root.join("mail").join(user);
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(home.join("Maildir").join(sub))?;
            }
            passwd.push_str(&format!(
                "{user}:{{PLAIN}}{password}::::{}::\n",
                home.display()
            ));
        }
        std::fs::write(root.join("passwd"), passwd)?;
        if let Some((uid, gid)) = owner {
            chown_tree(&root.join("mail"), uid, gid)?;
        }
        let port = free_port()?;
        let tls_port = free_port()?;
        let config = config_text(&root, &options, port, tls_port, owner.is_some())?;
        std::fs::write(root.join("dovecot.conf"), config)?;
        if let Some(url) = &options.oauth_introspection_url {
            std::fs::write(
                root.join("oauth2.conf.ext"),
                format!(
                    "introspection_mode = post\nintrospection_url = {url}\n\
                     username_attribute = username\nactive_attribute = active\nactive_value = true\n"
                ),
            )?;
        }
        let child = Command::new(DOVECOT_BINARY)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Dovecot {
            dir: root,
            child,
            port,
            tls_port,
            ca_file,
            owner,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until the plain port greets as ready (Dovecot says "Waiting
    /// for authentication process" until its auth process is up).
    fn wait_ready(&self) -> std::io::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                    if line.contains("ready") {
                        let mut stream = reader.into_inner();
                        let _ = stream.write_all(b"a LOGOUT\r\n");
                        return Ok(());
                    }
                    line.clear();
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(std::io::Error::other(format!(
                    "dovecot did not start: {}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// A folder's Maildir (`INBOX`, or `Archive.dmarcd` with Dovecot's
    /// default `.` separator).
    pub fn folder_dir(&self, user: &str, folder: &str) -> PathBuf {
        let maildir = self.dir.join("mail").join(user).join("Maildir");
        if folder.eq_ignore_ascii_case("INBOX") {
            maildir
        } else {
            maildir.join(format!(".{folder}"))
        }
    }

    /// Delivers a message into a folder as an MDA would (a file in the
    /// Maildir's `new/`, written in `tmp/` first).
    pub fn deliver(&self, user: &str, folder: &str, message: &[u8]) -> std::io::Result<()> {
        let dir = self.folder_dir(user, folder);
        for sub in ["new", "cur", "tmp"] {
            let path = dir.join(sub);
            if !path.exists() {
                std::fs::create_dir_all(&path)?;
                if let Some((uid, gid)) = self.owner {
                    chown_tree(&dir, uid, gid)?;
                }
            }
        }
        let name = format!(
            "{}.M{}P{}.dmarcd-test",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            DELIVERED.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        let temporary = dir.join("tmp").join(&name);
        std::fs::write(&temporary, message)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&temporary, Some(uid), Some(gid))?;
        }
        std::fs::rename(&temporary, dir.join("new").join(&name))
    }

    /// The messages in a folder, as their Maildir file names (flags after
    /// `:2,`; `S` is \Seen).
    pub fn messages(&self, user: &str, folder: &str) -> Vec<String> {
        let dir = self.folder_dir(user, folder);
        let mut names = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                names.extend(
                    entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.file_name().to_string_lossy().into_owned()),
                );
            }
        }
        names.sort();
        names
    }

    /// Removes every message file of a folder (what a user emptying it in
    /// a mail client does; Dovecot notices at its next look).
    pub fn clear(&self, user: &str, folder: &str) -> std::io::Result<()> {
        let dir = self.folder_dir(user, folder);
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                for entry in entries {
                    std::fs::remove_file(entry?.path())?;
                }
            }
        }
        Ok(())
    }

    /// Forgets a folder's UIDs (its uidlist and indexes), as a restored
    /// backup or a recreated folder does: the next session sees a new
    /// UIDVALIDITY and new UIDs for the same messages.
    pub fn reset_uids(&self, user: &str, folder: &str) -> std::io::Result<()> {
        let dir = self.folder_dir(user, folder);
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL would leave them.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_text(
    root: &Path,
    options: &DovecotOptions,
    port: u16,
    tls_port: u16,
    as_root: bool,
) -> std::io::Result<String> {
    let root = root.display();
    let accounts = if as_root {
        "default_internal_user = dovecot\ndefault_internal_group = dovecot\n\
         default_login_user = dovenull\nmail_uid = dovecot\nmail_gid = dovecot\n"
            .to_string()
    } else {
        let user = current_user()?;
        format!(
            "default_internal_user = {user}\ndefault_login_user = {user}\n\
             service imap-login {{\n  chroot =\n}}\n"
        )
    };
    let mechanisms = if options.oauth_introspection_url.is_some() {
        "plain login xoauth2 oauthbearer"
    } else {
        "plain login"
    };
    let oauth = if options.oauth_introspection_url.is_some() {
        format!(
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {root}/oauth2.conf.ext\n}}\n"
        )
    } else {
        String::new()
    };
    let quota = match options.quota_kib {
        Some(kib) => format!(
            "mail_plugins = $mail_plugins quota\nprotocol imap {{\n  mail_plugins = $mail_plugins imap_quota\n}}\n\
             plugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage={kib}K\n}}\n"
        ),
        None => String::new(),
    };
    Ok(format!(
        "base_dir = {root}/run\nstate_dir = {root}/state\ninstance_name = dmarcd-test-{port}\n\
         protocols = imap\nlisten = 127.0.0.1\nlog_path = {root}/dovecot.log\n\
         {accounts}first_valid_uid = 0\nfirst_valid_gid = 0\n\
         mail_location = maildir:~/Maildir\n\
         ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n\
         auth_mechanisms = {mechanisms}\nauth_failure_delay = 0\ndisable_plaintext_auth = no\n\
         {oauth}passdb {{\n  driver = passwd-file\n  mechanisms = plain login\n  args = scheme=PLAIN {root}/passwd\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = {root}/passwd\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
           inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n}}\n\
         service stats {{\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n\
         {quota}"
    ))
}

/// A CA (written to `ca_file`) and a certificate for localhost and
/// 127.0.0.1 signed by it: (certificate PEM, key PEM).
fn certificates(ca_file: &Path) -> std::io::Result<(String, String)> {
    let failed = |error: rcgen::Error| std::io::Error::other(error.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dmarcd Dovecot test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(failed)?)
        .map_err(failed)?;
    let key = KeyPair::generate().map_err(failed)?;
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(failed)?
        .signed_by(&key, &ca)
        .map_err(failed)?;
    std::fs::write(ca_file, ca.pem())?;
    Ok((leaf.pem(), key.serialize_pem()))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's user.
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn current_user() -> std::io::Result<String> {
    let output = Command::new("id").arg("-un").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A system user's (uid, gid), from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
