//! The dmarcd binary run as a user runs it, on a SQLite data directory
//! (no DATABASE_URL from the test environment leaks in).

use std::path::Path;
use std::process::Command;

/// What one run printed, and whether it succeeded.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `dmarcd ARGS` on the SQLite database in `data_dir`, with `env` set
/// (settings as DMARCD_* variables), logging warnings only.
pub fn dmarcd(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
    command
        .args(args)
        .env("DMARCD_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the dmarcd binary runs");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `dmarcd`, which must succeed; its standard output.
pub fn dmarcd_ok(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let run = dmarcd(data_dir, args, env);
    assert!(run.success, "{args:?}: {}", run.stderr);
    run.stdout
}
