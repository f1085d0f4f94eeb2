//! Facts about the machine a node runs on, for its registry entry.

use std::fs;

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
    fn finds_the_default_route_interface() {
        let table = "Iface\tDestination\tGateway\n\
                     eth1\t000200C0\t00000000\n\
                     eth0\t00000000\t010200C0\n";
        assert_eq!(default_route_interface(table), Some("eth0".to_owned()));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }
}
