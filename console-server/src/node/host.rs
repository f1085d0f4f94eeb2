//! Facts about the machine a node runs on, for its registry entry.

use std::ffi::CStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The address this machine is reached on: the first IPv4 address of the interface that
/// carries the default route, else the first IPv4 address of any other interface that is up,
/// else the first global IPv6 address; never a loopback or unspecified one. `None` on a
/// machine with loopback only. What a node advertises when it listens on `0.0.0.0`.
pub fn primary_address() -> Option<IpAddr> {
    let route = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let main = default_route_interface(&route);
    let addresses = interface_addresses();
    let usable = |ip: &IpAddr| !ip.is_loopback() && !ip.is_unspecified();
    let on_main = addresses
        .iter()
        .filter(|(iface, ip)| Some(iface) == main.as_ref() && ip.is_ipv4() && usable(ip));
    let v4 = addresses
        .iter()
        .filter(|(_, ip)| ip.is_ipv4() && usable(ip));
    // Link-local IPv6 addresses need a zone to be reached; skip them.
    let v6 = addresses.iter().filter(|(_, ip)| {
        matches!(ip, IpAddr::V6(v6) if usable(ip) && (v6.segments()[0] & 0xffc0) != 0xfe80)
    });
    on_main.chain(v4).chain(v6).map(|(_, ip)| *ip).next()
}

/// Every address of every interface that is up, with the interface's name (`getifaddrs(3)`).
fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we free below, once.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        if !up || ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let address = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let v4 = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
                }
                libc::AF_INET6 => {
                    let v6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
                }
                _ => None,
            }
        };
        if let Some(address) = address {
            found.push((name, address));
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
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

    #[test]
    fn the_primary_address_is_a_reachable_one() {
        // Loopback is always listed, never chosen.
        assert!(interface_addresses().iter().any(|(_, ip)| ip.is_loopback()));
        if let Some(ip) = primary_address() {
            assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        }
    }
}
