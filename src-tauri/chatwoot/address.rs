//! The relay's public webhook URL as Chatwoot will see it: its form, and whether Chatwoot can reach it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// Whom a webhook URL's host can be reached by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A public address or name.
    Public,
    /// A LAN address (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) or a name only a LAN knows
    /// (`.local`, `.lan`, `.internal`, `.home`, a name without a dot such as a Docker service).
    Private,
    /// This computer only (127/8, ::1, localhost).
    Loopback,
    /// 169.254/16, fe80::/10: not even routed on a LAN.
    LinkLocal,
}

impl Reach {
    /// The word on the wire (`public`, `private`, `loopback`, `linkLocal`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Loopback => "loopback",
            Self::LinkLocal => "linkLocal",
        }
    }
}

/// What Chatwoot makes of the URL's host. Chatwoot ≥ 4.14 refuses every kind but [`Reach::Public`] unless its
/// operator allows private networks.
pub fn classify(url: &Url) -> Reach {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => of_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => of_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => of_name(name),
        None => Reach::Private,
    }
}

fn of_ip(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => Reach::Loopback,
        IpAddr::V4(ip) if ip.is_link_local() => Reach::LinkLocal,
        IpAddr::V4(ip) if ip.is_private() || is_shared(ip) => Reach::Private,
        IpAddr::V6(ip) if ip.is_loopback() || ip.is_unspecified() => Reach::Loopback,
        IpAddr::V6(ip) if ip.is_unicast_link_local() => Reach::LinkLocal,
        IpAddr::V6(ip) if is_unique_local(ip) => Reach::Private,
        IpAddr::V6(ip) => ip
            .to_ipv4_mapped()
            .map_or(Reach::Public, |v4| of_ip(IpAddr::V4(v4))),
        IpAddr::V4(_) => Reach::Public,
    }
}

/// 100.64.0.0/10, the carrier-grade NAT range (also Tailscale's).
fn is_shared(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 100 && (64..128).contains(&b)
}

fn is_unique_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xfe00 == 0xfc00
}

fn of_name(name: &str) -> Reach {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Reach::Loopback;
    }
    let lan_only = [
        ".local",
        ".lan",
        ".internal",
        ".home",
        ".home.arpa",
        ".intranet",
        ".corp",
    ];
    if !name.contains('.') || lan_only.iter().any(|suffix| name.ends_with(suffix)) {
        return Reach::Private;
    }
    Reach::Public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(raw: &str) -> Reach {
        classify(&Url::parse(raw).unwrap())
    }

    #[test]
    fn hosts_are_classified_as_chatwoot_sees_them() {
        assert_eq!(reach("https://relay.example.com/webhook"), Reach::Public);
        assert_eq!(reach("http://203.0.113.9:3000/webhook"), Reach::Public);
        assert_eq!(reach("http://192.168.1.20:3000/webhook"), Reach::Private);
        assert_eq!(reach("http://10.0.0.5/webhook"), Reach::Private);
        assert_eq!(reach("http://172.20.0.3/webhook"), Reach::Private);
        assert_eq!(reach("http://100.101.102.103/webhook"), Reach::Private);
        assert_eq!(reach("http://[fd00::1]/webhook"), Reach::Private);
        assert_eq!(reach("http://chatgowa:3000/webhook"), Reach::Private);
        assert_eq!(reach("http://office-pc.local:3000/webhook"), Reach::Private);
        assert_eq!(reach("http://127.0.0.1:3000/webhook"), Reach::Loopback);
        assert_eq!(reach("http://localhost:3000/webhook"), Reach::Loopback);
        assert_eq!(reach("http://[::1]:3000/webhook"), Reach::Loopback);
        assert_eq!(reach("http://[::ffff:192.168.0.2]/webhook"), Reach::Private);
        assert_eq!(reach("http://169.254.10.1/webhook"), Reach::LinkLocal);
        assert_eq!(reach("http://[fe80::1]/webhook"), Reach::LinkLocal);
    }
}
