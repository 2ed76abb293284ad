//! The one line a person can act on, for an incident: who, to whom, what,
//! where it died and, when a joined kernel drop was explained, which policy
//! and which trap. Every sink prints the same line (it travels in the
//! contract as `Incident.summary`). No I/O here.

use std::fmt::Write as _;

use super::{
    dns::{qtype_name, rcode_name},
    identity::Identity,
    incident::{FailurePlace, Incident},
    socket::{CgroupOwner, ConnectOutcome},
    tuple::Endpoint,
    verdict::{Explanation, Verdict},
};

/// The name of an errno a failed connect reports.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENETDOWN => "ENETDOWN",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EPROTO => "EPROTO",
        _ => return None,
    })
}

impl Incident {
    /// `frontend/pod-a → kube-system/svc/kube-dns:53 (→ 10.244.1.3:5353)
    /// DNS_UNANSWERED "api.shop.svc.cluster.local A" 3 tries, dropped on this
    /// node by NETFILTER_DROP, denied by shop/default-deny-egress
    /// (dns_egress_denied)`.
    pub fn summary(&self) -> String {
        let mut line = String::new();
        line.push_str(&self.source_name());
        line.push_str(" → ");
        line.push_str(&self.destination_name());
        if let Some(backend) = self.backend() {
            let _ = write!(line, " (→ {backend})");
        }
        let _ = write!(line, " {}", self.kind);
        if let Some(dns) = &self.dns {
            let qtype = qtype_name(dns.qtype)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("TYPE{}", dns.qtype));
            let _ = write!(line, " \"{} {qtype}\"", dns.name);
            let tries = if dns.attempts == 1 { "try" } else { "tries" };
            let _ = write!(line, " {} {tries}", dns.attempts);
            if let (Some(rcode), Some(latency)) = (dns.rcode, dns.latency) {
                let name = rcode_name(rcode)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("RCODE{rcode}"));
                let _ = write!(line, ", answered {name} in {}ms", latency.as_millis());
            }
        }
        if let Some(tcp) = &self.tcp {
            if tcp.syn_retransmits > 0 {
                let _ = write!(
                    line,
                    " after {} SYN retransmit{}",
                    tcp.syn_retransmits,
                    if tcp.syn_retransmits == 1 { "" } else { "s" },
                );
            }
            let _ = write!(line, " in {:.1}s", tcp.duration().as_secs_f64());
            if let Some(name) = errno_name(tcp.socket_error) {
                let _ = write!(line, " ({name})");
            }
        }
        line.push_str(", ");
        line.push_str(&self.place_phrase());
        if let Some(explanation) = &self.explanation {
            line.push_str(&policy_phrase(explanation));
        }
        line
    }

    fn source_name(&self) -> String {
        if let Some(process) = &self.process {
            match (&process.owner, &self.source) {
                (Some(CgroupOwner::Kubelet), _) => return "kubelet".to_owned(),
                (_, Some(identity @ Identity::Pod { .. })) => {
                    return short_name(identity, None);
                }
                (Some(CgroupOwner::Pod { uid, .. }), _) => return format!("pod uid {uid}"),
                _ => {}
            }
        }
        match &self.source {
            Some(identity) => short_name(identity, None),
            None => self.flow.src.ip.to_string(),
        }
    }

    fn destination_name(&self) -> String {
        match &self.destination {
            Some(identity) => short_name(identity, Some(self.flow.dst.port)),
            None => self.flow.dst.to_string(),
        }
    }

    /// Where a Service VIP sent the flow: from a joined drop's conntrack
    /// reply, else the identity's known backend.
    fn backend(&self) -> Option<Endpoint> {
        if let Some(drop) = self.drops.last()
            && let Some(conntrack) = &drop.conntrack
            && conntrack.is_dnat()
        {
            return Some(conntrack.reply.src);
        }
        match &self.destination {
            Some(Identity::Service {
                backend: Some(backend),
                ..
            }) => Some(Endpoint {
                ip: backend.ip,
                port: backend.port,
            }),
            _ => None,
        }
    }

    fn place_phrase(&self) -> String {
        match self.place {
            FailurePlace::ThisNode => match self.drops.last() {
                Some(drop) => format!("dropped on this node by {}", drop.reason),
                None => "dropped on this node".to_owned(),
            },
            FailurePlace::BeyondNode => {
                let interface = self
                    .tcp
                    .as_ref()
                    .and_then(|tcp| tcp.left_interface.as_ref())
                    .or_else(|| {
                        self.dns
                            .as_ref()
                            .and_then(|dns| dns.left_interface.as_ref())
                    });
                match interface {
                    Some(interface) => format!(
                        "left this node by {} and nothing came back",
                        interface
                            .name
                            .clone()
                            .unwrap_or_else(|| format!("ifindex {}", interface.ifindex))
                    ),
                    None => "left this node and nothing came back".to_owned(),
                }
            }
            FailurePlace::Refused => match (&self.tcp, &self.dns) {
                (Some(tcp), _) if tcp.outcome == ConnectOutcome::Unreachable => {
                    "an ICMP unreachable came back".to_owned()
                }
                (Some(_), _) => "refused by the destination (RST)".to_owned(),
                (None, Some(_)) => "the server answered with an error".to_owned(),
                (None, None) => "refused".to_owned(),
            },
            FailurePlace::Unseen => {
                "not dropped on this node, not seen leaving it: where it died is unknown here"
                    .to_owned()
            }
            FailurePlace::NotFailed => "established in the end".to_owned(),
        }
    }
}

/// `, denied by ns/policy (hint_code, …)` for a denying explanation;
/// empty when policy allows the flow.
fn policy_phrase(explanation: &Explanation) -> String {
    if !explanation.is_complete() {
        return format!(
            ", NetworkPolicy verdict {} but INCOMPLETE ({} objects that could decide it failed to load)",
            explanation.verdict.as_str(),
            explanation.incomplete.len() as u64 + explanation.incomplete_unlisted
        );
    }
    if explanation.verdict == Verdict::Allow {
        return ", allowed by NetworkPolicy".to_owned();
    }
    let mut phrase = String::from(", denied by ");
    let mut policies = Vec::new();
    if matches!(explanation.verdict, Verdict::DenyEgress | Verdict::DenyBoth) {
        policies.extend(explanation.egress.policies.iter());
    }
    if matches!(
        explanation.verdict,
        Verdict::DenyIngress | Verdict::DenyBoth
    ) {
        policies.extend(explanation.ingress.policies.iter());
    }
    if policies.is_empty() {
        phrase.push_str("NetworkPolicy");
    } else {
        let names: Vec<String> = policies
            .iter()
            .map(|policy| format!("{}/{}", policy.namespace, policy.name))
            .collect();
        phrase.push_str(&names.join(", "));
    }
    if !explanation.hints.is_empty() {
        let codes: Vec<&str> = explanation
            .hints
            .iter()
            .map(|hint| hint.code.as_str())
            .collect();
        let _ = write!(phrase, " ({})", codes.join(", "));
    }
    phrase
}

/// `namespace/name` for pods, `namespace/svc/name:port` for Services, the
/// node for nodes, the address otherwise.
fn short_name(identity: &Identity, port: Option<u16>) -> String {
    let with_port = |name: String| match port {
        Some(port) => format!("{name}:{port}"),
        None => name,
    };
    match identity {
        Identity::Pod {
            namespace, name, ..
        } => with_port(format!("{namespace}/{name}")),
        Identity::Service {
            namespace, name, ..
        } => with_port(format!("{namespace}/svc/{name}")),
        Identity::Node { name, .. } => with_port(format!("node/{name}")),
        Identity::External { cidr } => with_port(cidr.addr().to_string()),
        Identity::Unknown { ip } => with_port(ip.to_string()),
    }
}
