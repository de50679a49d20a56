//! A running `ehi-sync` process whose output is collected line by line as it comes, so a test
//! can act at a given moment of the run (kill it, release a lock, silence a connection).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a finished run printed.
pub struct Finished {
    /// The exit code; -1 when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// A graceful stop: exit code 7 once the batches in hand are written.
    pub fn assert_stopped_gracefully(&self) {
        assert_eq!(
            self.code, 7,
            "graceful stop:\n{}\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains("stopping after the batches in hand"),
            "{}",
            self.stderr
        );
    }
}

fn collect(pipe: impl Read + Send + 'static, lines: &Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    let lines = Arc::clone(lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().expect("lines").push(line);
        }
    })
}

impl Running {
    /// `ehi-sync sync --config <config> <extra...>`.
    pub fn sync(config: &Path, extra: &[&str]) -> Running {
        Running::start(config, extra, &[])
    }

    /// `ehi-sync sync --config <config>` with `env` added to its environment.
    pub fn sync_with_env(config: &Path, env: &[(&str, &str)]) -> Running {
        Running::start(config, &[], env)
    }

    fn start(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ehi-sync"))
            .args(["sync", "--config"])
            .arg(config)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ehi-sync");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout pipe"), &stdout),
            collect(child.stderr.take().expect("stderr pipe"), &stderr),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once standard error has a line containing `text`.
    pub fn saw(&self, text: &str) -> bool {
        self.stderr
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(text))
    }

    /// Waits until standard error has a line containing `text` (panics after `limit`); false
    /// when the process ended first.
    pub fn wait_for(&mut self, text: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while !self.saw(text) {
            if !self.is_running() {
                return false;
            }
            assert!(
                start.elapsed() < limit,
                "'{text}' not seen within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll").is_none()
    }

    /// Sends a signal by name (`KILL`, `TERM`).
    #[cfg(unix)]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Runs `ehi-sync sync --config <config>` to its end (at most `limit`): it must resume the
    /// unfinished run and succeed.
    pub fn resume(config: &Path, limit: Duration) -> Finished {
        let last = Running::sync(config, &[]).wait(limit);
        assert_eq!(last.code, 0, "{}\n{}", last.stdout, last.stderr);
        assert!(last.stdout.contains("Resuming run"), "{}", last.stdout);
        last
    }

    /// Waits at most `limit` for the process to end; kills it past that (a hang is a failure,
    /// never a stuck test).
    pub fn wait(mut self, limit: Duration) -> Finished {
        let start = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("poll") {
                #[cfg(unix)]
                {
                    use std::os::unix::process::ExitStatusExt;
                    if let Some(signal) = status.signal() {
                        eprintln!("ehi-sync ended by signal {signal}");
                    }
                }
                break status.code().unwrap_or(-1);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "ehi-sync did not finish within {limit:?}:\n{}",
                    self.stderr.lock().expect("lines").join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let joined = |lines: &Arc<Mutex<Vec<String>>>| lines.lock().expect("lines").join("\n");
        Finished {
            code,
            stdout: joined(&self.stdout),
            stderr: joined(&self.stderr),
        }
    }
}
