//! IP allowlists: a list of CIDR networks (IPv4 and IPv6); empty means "any address".

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct IpAllowList(Vec<IpNet>);

impl IpAllowList {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&ip))
    }
}

impl IpAllowList {
    /// True if every address `other` allows, this list allows too (an empty list allows any).
    pub fn covers(&self, other: &IpAllowList) -> bool {
        self.0.is_empty()
            || (!other.0.is_empty()
                && other
                    .0
                    .iter()
                    .all(|n| self.0.iter().any(|mine| mine.contains(n))))
    }
}

impl TryFrom<Vec<String>> for IpAllowList {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Self, String> {
        if v.len() > 100 {
            return Err("allowed_ips takes at most 100 networks".into());
        }
        v.iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("invalid CIDR {s:?} in allowed_ips, e.g. 203.0.113.0/24 or 2001:db8::/32"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(IpAllowList)
    }
}

impl From<IpAllowList> for Vec<String> {
    fn from(l: IpAllowList) -> Self {
        l.0.iter().map(|n| n.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_v4_v6_and_mapped() {
        let l = IpAllowList::try_from(vec![
            "203.0.113.0/24".to_string(),
            "2001:db8::/32".into(),
            "10.0.0.1".into(),
        ])
        .unwrap();
        assert!(l.allows("203.0.113.9".parse().unwrap()));
        assert!(l.allows("::ffff:203.0.113.9".parse().unwrap()));
        assert!(l.allows("2001:db8::1".parse().unwrap()));
        assert!(l.allows("10.0.0.1".parse().unwrap()));
        assert!(!l.allows("127.0.0.1".parse().unwrap()));
        assert!(IpAllowList::default().allows("127.0.0.1".parse().unwrap()));
        assert!(IpAllowList::try_from(vec!["nope".to_string()]).is_err());
        let narrow = IpAllowList::try_from(vec!["203.0.113.8/29".to_string()]).unwrap();
        assert!(l.covers(&narrow));
        assert!(!narrow.covers(&l));
        assert!(!narrow.covers(&IpAllowList::default()));
        assert!(IpAllowList::default().covers(&l));
    }
}
