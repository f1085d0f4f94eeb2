//! Spawning an app's command: its log file, its environment, its own session, and a reaper.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::process::Stdio;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use tokio::process::{Child, Command};

use super::super::proc_stat::{self, ProcStat};
use super::super::{AppRef, ExecutorError, ProcessSpec};
use super::{APP_KEY_VAR, ProcessExecutor, ProcessHandle};

impl ProcessExecutor {
    /// Starts the app's command. Synchronous on purpose: once the process exists, nothing can
    /// cancel this before the handle is returned.
    pub(super) fn spawn(
        &self,
        app: &AppRef<'_>,
        spec: &ProcessSpec,
    ) -> Result<ProcessHandle, ExecutorError> {
        let program = &spec.command[0];
        let spawn_error = |reason: String| ExecutorError::Spawn {
            program: program.clone(),
            reason,
        };
        if let Some(cwd) = &spec.cwd
            && !cwd.is_dir()
        {
            return Err(spawn_error(format!(
                "working directory {} is not a directory",
                cwd.display()
            )));
        }

        let log_path = self.log_path(app.id);
        let log_error = |error: io::Error| ExecutorError::LogFile {
            path: log_path.clone(),
            reason: error.to_string(),
        };
        std::fs::create_dir_all(&self.log_dir).map_err(|error| ExecutorError::LogFile {
            path: self.log_dir.clone(),
            reason: error.to_string(),
        })?;
        let mut stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(log_error)?;
        let unix_time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        writeln!(
            stdout,
            "[console] starting app {} {:?} at unix time {unix_time}: {:?}",
            app.id, app.name, spec.command
        )
        .map_err(log_error)?;
        let stderr = stdout.try_clone().map_err(log_error)?;

        let app_key = self.app_key(app.id);
        let mut command = Command::new(program);
        command
            .args(&spec.command[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"CONSOLE_") {
                command.env_remove(name);
            }
        }
        command
            .envs(&spec.env)
            .env("CONSOLE_APP_ID", app.id.to_string())
            .env("CONSOLE_APP_NAME", app.name)
            .env(APP_KEY_VAR, &app_key);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // functions may be called; it calls setsid(2), which is one, and touches no shared state.
        unsafe {
            command.pre_exec(start_new_session);
        }
        let mut child = command
            .spawn()
            .map_err(|error| spawn_error(error.to_string()))?;

        // Until the reaper below waits for it, the child stays in /proc (as a zombie at worst).
        let stat = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| "the started process has no pid".to_owned())
            .and_then(|pid| match proc_stat::read(pid) {
                Ok(Some(stat)) => Ok((pid, stat)),
                Ok(None) => Err(format!("/proc/{pid}/stat vanished right after the start")),
                Err(error) => Err(error.to_string()),
            });
        let (pid, stat): (i32, ProcStat) = match stat {
            Ok(found) => found,
            Err(reason) => {
                // Without a handle nobody could stop it later: do not leave it running.
                if let Err(error) = child.start_kill() {
                    tracing::warn!(app_id = app.id, %error, "cannot kill an unidentified app process");
                }
                self.reap_in_background(app.id, None, child);
                return Err(spawn_error(reason));
            }
        };

        let handle = ProcessHandle {
            pid: pid.unsigned_abs(),
            start_time_ticks: stat.start_time_ticks,
            boot_id: self.host.boot_id.clone(),
            host: self.host.host_name.clone(),
            machine_id: self.host.machine_id.clone(),
            app_key,
            log_path,
        };
        tracing::info!(app_id = app.id, pid, "started app process");
        self.reap_in_background(app.id, Some(handle.clone()), child);
        self.failpoints.after_spawn(app.name);
        Ok(handle)
    }

    /// Waits for a child in a background task so that it does not linger as a zombie, and
    /// remembers its exit status.
    fn reap_in_background(&self, app_id: i64, handle: Option<ProcessHandle>, mut child: Child) {
        let exit_statuses = Arc::clone(&self.exit_statuses);
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => {
                    tracing::info!(app_id, %status, "app process exited");
                    if let Some(handle) = handle {
                        exit_statuses
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(&handle, status);
                    }
                }
                Err(error) => tracing::warn!(app_id, %error, "cannot wait for app process"),
            }
        });
    }
}

/// The `pre_exec` hook: makes the child a session (and process group) leader.
fn start_new_session() -> io::Result<()> {
    // SAFETY: setsid(2) has no memory-safety preconditions and is async-signal-safe.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
