//! A real SMTP server on loopback for mail dmarcd sends: Debian's
//! python3-aiosmtpd, started per test, writing each message it accepts to
//! a directory (`NNNN.eml`, its envelope beside it in `NNNN.json`).
//! It can answer `451` to the first messages, as a greylisting relay does,
//! or take in the first messages whole and never answer (`NNNN.hung`
//! holds what it took), as a relay stuck at the final dot does.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const SERVER: &str = r#"
import asyncio, json, os, sys
from aiosmtpd.smtp import SMTP

out, refuse_first, hang_first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = 0

class Sink:
    async def handle_DATA(self, server, session, envelope):
        global seen
        seen += 1
        if seen <= refuse_first:
            return "451 4.7.1 Greylisted, try again later"
        name = os.path.join(out, "%04d" % seen)
        if seen <= refuse_first + hang_first:
            with open(name + ".tmp", "wb") as f:
                f.write(envelope.original_content)
            os.rename(name + ".tmp", name + ".hung")
            await asyncio.sleep(3600)
        with open(name + ".json", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        with open(name + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(name + ".tmp", name + ".eml")
        return "250 2.0.0 Stored"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(), hostname="sink.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _process: tokio::process::Child,
}

impl SmtpSink {
    /// None (loudly; an error in CI) when aiosmtpd is not installed.
    pub async fn start(refuse_first: u32) -> Option<SmtpSink> {
        SmtpSink::start_with(refuse_first, 0).await
    }

    /// A sink that takes in the first `hang_first` messages and never
    /// answers them.
    pub async fn start_hanging(hang_first: u32) -> Option<SmtpSink> {
        SmtpSink::start_with(0, hang_first).await
    }

    async fn start_with(refuse_first: u32, hang_first: u32) -> Option<SmtpSink> {
        let installed = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "python3-aiosmtpd must be installed in CI (.ci/run installs it)"
            );
            eprintln!("NOTE: python3-aiosmtpd is missing: this mail test was SKIPPED");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut process = tokio::process::Command::new("/usr/bin/python3")
            .args(["-c", SERVER])
            .arg(dir.path())
            .arg(refuse_first.to_string())
            .arg(hang_first.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP sink says its port")
            .unwrap()
            .expect("a port line")
            .trim()
            .parse()
            .unwrap();
        Some(SmtpSink {
            port,
            dir,
            _process: process,
        })
    }

    /// The messages stored so far, in order: (envelope JSON, raw bytes).
    pub fn messages(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|eml| {
                let envelope =
                    serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap())
                        .unwrap();
                (envelope, std::fs::read(&eml).unwrap())
            })
            .collect()
    }

    /// The messages taken in and never answered so far, in order.
    pub fn hung(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "hung"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|path| std::fs::read(path).unwrap())
            .collect()
    }

    /// Waits (up to 10 s) until `count` messages are stored.
    pub async fn wait_for(&self, count: usize) -> Vec<(serde_json::Value, Vec<u8>)> {
        let start = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= count || start.elapsed() > Duration::from_secs(10) {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
