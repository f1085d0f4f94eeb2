//! Facts about the machine a node runs on, for its registry entry.

use std::fs;

use task_dispatch::HostId;

use crate::executor::HostIdentity;

/// This machine's identity for host affinity: `<host name>/<machine id>`, from the same reading
/// of the machine as the process executor records in its handles
/// ([`HostIdentity`](crate::executor::HostIdentity)), so that a node and the apps it starts agree
/// on which host they are. The host name alone is not enough (two cloned virtual machines share
/// it), nor is the machine id (containers built from one image share it, each with its own host
/// name and processes).
///
/// # Notable behaviors
/// Without a readable machine id (a minimal container) the identity is the host name alone,
/// with a warning: two machines with one host name would then look like one host.
///
/// # Notable errors
/// The host name cannot be read, or is empty.
pub fn host_identity() -> Result<HostId, String> {
    let host = HostIdentity::current().map_err(|error| error.to_string())?;
    identity(&host.host_name, Some(host.machine_id.as_str()))
}

fn identity(host_name: &str, machine_id: Option<&str>) -> Result<HostId, String> {
    if host_name.is_empty() {
        return Err("the host name is empty".to_owned());
    }
    match machine_id.filter(|id| !id.is_empty()) {
        Some(machine_id) => Ok(HostId::new(format!("{host_name}/{machine_id}"))),
        None => {
            tracing::warn!("no machine id: this node's host identity is its host name alone");
            Ok(HostId::new(host_name))
        }
    }
}

/// The MAC address of the interface that carries the default route (the "main" interface), or
/// of the first non-loopback interface with a real address; `None` when neither exists (a
/// sandbox with loopback only).
pub fn main_mac_address() -> Option<String> {
    let route = fs::read_to_string("/proc/net/route").unwrap_or_default();
    default_route_interface(&route)
        .and_then(|iface| mac_of(&iface))
        .or_else(|| {
            let mut names: Vec<String> = fs::read_dir("/sys/class/net")
                .ok()?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name != "lo")
                .collect();
            names.sort();
            names.iter().find_map(|name| mac_of(name))
        })
}

/// The interface of the first default route (destination 0.0.0.0) in `/proc/net/route`.
fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let iface = fields.next()?;
        (fields.next()? == "00000000").then(|| iface.to_owned())
    })
}

fn mac_of(iface: &str) -> Option<String> {
    let mac = fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let mac = mac.trim();
    (!mac.is_empty() && mac != "00:00:00:00:00:00").then(|| mac.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_identity_joins_host_name_and_machine_id() {
        assert_eq!(
            identity("vm", Some("3d1219c7")).unwrap(),
            HostId::new("vm/3d1219c7")
        );
        assert_eq!(identity("vm", Some("")).unwrap(), HostId::new("vm"));
        assert_eq!(identity("vm", None).unwrap(), HostId::new("vm"));
        assert!(identity("", Some("3d1219c7")).is_err());
        let here = host_identity().unwrap();
        assert!(
            here.as_str().starts_with(
                fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap()
                    .trim()
            )
        );
    }

    #[test]
    fn finds_the_default_route_interface() {
        let table = "Iface\tDestination\tGateway\n\
                     eth1\t000200C0\t00000000\n\
                     eth0\t00000000\t010200C0\n";
        assert_eq!(default_route_interface(table), Some("eth0".to_owned()));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }
}
