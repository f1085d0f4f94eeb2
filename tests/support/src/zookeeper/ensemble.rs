//! A ZooKeeper ensemble of one test: `deploy/zookeeper.sh` with `ZK_ENSEMBLE`, every member on
//! free loopback ports, for tests that kill the leader or a follower.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::deploy_script::DeployScript;
use crate::ports::free_port;
use crate::wait::poll_until;

/// How long a four-letter command may take to answer.
const FOUR_LETTER_TIMEOUT: Duration = Duration::from_secs(2);

/// A ZooKeeper ensemble of one test, run by the project's `deploy/zookeeper.sh` with
/// `ZK_ENSEMBLE`, `ZK_CLIENT_PORTS`, `ZK_QUORUM_PORTS`, `ZK_ELECTION_PORTS` and `ZK_DIR` of its
/// own. Members are numbered from 1, as in the script (`ZK_MEMBER`) and their `myid`. Dropping
/// it runs `deploy/zookeeper.sh clean` (stop every member, then delete its directory).
#[derive(Debug)]
pub struct PrivateEnsemble {
    /// Client port of member `i + 1`.
    client_ports: Vec<u16>,
    script: DeployScript,
}

impl PrivateEnsemble {
    /// Starts `size` members with their files under `dir` (a test's run directory, say; a
    /// temporary directory of its own when `None`) and waits until every member serves.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start(size: usize, dir: Option<&Path>) -> Self {
        assert!(size > 1, "an ensemble has more than one member, not {size}");
        let ports = distinct_free_ports(3 * size);
        let list = |part: &[u16]| {
            part.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let client_ports = ports[..size].to_vec();
        let env = vec![
            ("ZK_ENSEMBLE", size.to_string()),
            ("ZK_PORT", client_ports[0].to_string()),
            ("ZK_CLIENT_PORTS", list(&client_ports)),
            ("ZK_QUORUM_PORTS", list(&ports[size..2 * size])),
            ("ZK_ELECTION_PORTS", list(&ports[2 * size..])),
        ];
        let script = DeployScript::new("zookeeper.sh", env, "ZK_DIR", dir, "private-ensemble-");
        script.run("start").await;
        Self {
            client_ports,
            script,
        }
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.client_ports.len()
    }

    /// The connection string of every member: `127.0.0.1:a,127.0.0.1:b,…`.
    pub fn servers(&self) -> String {
        self.client_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `127.0.0.1:port` of member `member`.
    pub fn member_servers(&self, member: usize) -> String {
        format!("127.0.0.1:{}", self.client_port(member))
    }

    fn client_port(&self, member: usize) -> u16 {
        assert!(
            (1..=self.size()).contains(&member),
            "members are numbered 1 to {}, not {member}",
            self.size()
        );
        self.client_ports[member - 1]
    }

    /// What member `member` says it is (`srvr`'s `Mode`: `leader` or `follower`); `None` when
    /// it does not answer or does not serve (no quorum, or an election under way).
    pub async fn mode(&self, member: usize) -> Option<String> {
        let reply = four_letter(self.client_port(member), "srvr").await.ok()?;
        reply
            .lines()
            .find_map(|line| line.strip_prefix("Mode: "))
            .map(|mode| mode.trim().to_owned())
    }

    /// The member that says it leads, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for member in 1..=self.size() {
            if self.mode(member).await.as_deref() == Some("leader") {
                return Some(member);
            }
        }
        None
    }

    /// Waits until a member leads and a quorum serves (the leader and at least one follower
    /// answer `srvr` with a Mode); answers the leader and when that was first seen.
    ///
    /// # Notable errors
    /// Not within `within`: what each member said last.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<(usize, Instant), String> {
        let quorum = self.size() / 2 + 1;
        poll_until(within, || async move {
            let mut modes = Vec::new();
            for member in 1..=self.size() {
                modes.push((member, self.mode(member).await));
            }
            let serving = modes.iter().filter(|(_, mode)| mode.is_some()).count();
            let leader = modes
                .iter()
                .find(|(_, mode)| mode.as_deref() == Some("leader"))
                .map(|(member, _)| *member);
            match leader {
                Some(leader) if serving >= quorum => Ok(leader),
                _ => Err(format!("modes by member: {modes:?}")),
            }
        })
        .await
        .map_err(|timed_out| {
            format!(
                "no leader with a quorum within {:?}; last seen {}",
                timed_out.waited, timed_out.last
            )
        })
    }

    /// Kills member `member` with SIGKILL (`ZK_MEMBER=<member> deploy/zookeeper.sh kill`) and
    /// waits until its process is gone and its client port closed. Its data is kept.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn kill(&self, member: usize) {
        self.client_port(member);
        self.script
            .run_with("kill", &[("ZK_MEMBER", member.to_string())])
            .await;
    }

    /// Starts member `member` again (`ZK_MEMBER=<member> deploy/zookeeper.sh start`) and waits
    /// until it serves, i.e. has joined the quorum.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start_member(&self, member: usize) {
        self.client_port(member);
        self.script
            .run_with("start", &[("ZK_MEMBER", member.to_string())])
            .await;
    }
}

/// `count` distinct free ports (each bound, then released; see [`free_port`]).
fn distinct_free_ports(count: usize) -> Vec<u16> {
    let mut seen = BTreeSet::new();
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let port = free_port();
        if seen.insert(port) {
            ports.push(port);
        }
    }
    ports
}

/// Sends a four-letter command to the server on `127.0.0.1:port` and answers its reply.
async fn four_letter(port: u16, command: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(command.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(FOUR_LETTER_TIMEOUT, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => Err(format!("{command} on port {port}: {error}")),
        Err(_) => Err(format!(
            "{command} on port {port}: no reply within {FOUR_LETTER_TIMEOUT:?}"
        )),
    }
}
