//! The tuples a join compares. An incident offers the flow as its client's
//! socket saw it (to the address it sent to, before any DNAT) and the same
//! source to the destination the application asked for; a kernel drop
//! offers its original (conntrack) tuple and its translated ones (the
//! packet's headers at the drop, and the conntrack reply reversed: after
//! DNAT and SNAT). Every match needs the protocol and the client's address
//! and port on both sides ([`Key`], the index of pending entries); how much
//! more matches is the [`v1::TupleMatch`].

use std::net::IpAddr;

use dropscope_proto::v1;

/// IP protocol numbers whose ports name a client socket.
const WITH_PORTS: [u32; 3] = [6, 17, 132];

/// One end of a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Side {
    ip: IpAddr,
    port: u32,
}

/// A directed tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    protocol: u32,
    source: Side,
    destination: Side,
}

impl FlowTuple {
    fn key(&self) -> Key {
        Key {
            protocol: self.protocol,
            source: self.source,
        }
    }

    fn reversed(&self) -> Self {
        Self {
            protocol: self.protocol,
            source: self.destination,
            destination: self.source,
        }
    }
}

/// What every match needs: the protocol and the client's address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    protocol: u32,
    source: Side,
}

fn side(endpoint: Option<&v1::Endpoint>) -> Option<Side> {
    let endpoint = endpoint?;
    Some(Side {
        ip: endpoint.ip.parse().ok()?,
        port: endpoint.port,
    })
}

fn tuple(tuple: Option<&v1::Tuple>) -> Option<FlowTuple> {
    let tuple = tuple?;
    Some(FlowTuple {
        protocol: tuple.protocol_number,
        source: side(tuple.source.as_ref())?,
        destination: side(tuple.destination.as_ref())?,
    })
}

/// An incident's tuples: its flow, and its source to `asked` when that
/// differs. Empty when the flow has no client port to match on.
pub fn of_incident(incident: &v1::Incident) -> Vec<FlowTuple> {
    let Some(flow) = tuple(incident.flow.as_ref()) else {
        return Vec::new();
    };
    if !WITH_PORTS.contains(&flow.protocol) || flow.source.port == 0 {
        return Vec::new();
    }
    let mut tuples = vec![flow];
    if let Some(asked) = side(incident.asked.as_ref()).filter(|asked| *asked != flow.destination) {
        tuples.push(FlowTuple {
            destination: asked,
            ..flow
        });
    }
    tuples
}

/// The key an incident waits under; `None` when it cannot be matched.
pub fn incident_key(tuples: &[FlowTuple]) -> Option<Key> {
    tuples.first().map(FlowTuple::key)
}

/// A drop's tuples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropTuples {
    /// As the client sent it: the conntrack original, or the packet's
    /// headers when it carried no conntrack entry.
    original: Option<FlowTuple>,
    /// With a conntrack entry: the packet's headers at the drop, and the
    /// reply reversed.
    translated: Vec<FlowTuple>,
}

impl DropTuples {
    /// The tuples of `drop`.
    pub fn of(drop: &v1::DropEvent) -> Self {
        let packet = tuple(drop.packet.as_ref());
        let Some(conntrack) = drop.conntrack.as_ref() else {
            // No conntrack entry: nothing translated the packet here.
            return Self {
                original: packet,
                translated: Vec::new(),
            };
        };
        let mut translated: Vec<FlowTuple> = packet.into_iter().collect();
        if let Some(reply) = tuple(conntrack.reply.as_ref()) {
            let forward = reply.reversed();
            if !translated.contains(&forward) {
                translated.push(forward);
            }
        }
        Self {
            original: tuple(conntrack.original.as_ref()),
            translated,
        }
    }

    /// Every key the drop can be found under (one per distinct client
    /// address and port among its tuples).
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        for key in self
            .original
            .iter()
            .chain(&self.translated)
            .map(FlowTuple::key)
        {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// How the drop matches an incident with `incident` tuples; `None`
    /// when it does not.
    pub fn matches(&self, incident: &[FlowTuple]) -> Option<v1::TupleMatch> {
        if self
            .original
            .is_some_and(|original| incident.contains(&original))
        {
            return Some(v1::TupleMatch::Original);
        }
        if self.translated.iter().any(|tuple| incident.contains(tuple)) {
            return Some(v1::TupleMatch::Translated);
        }
        let key = incident_key(incident)?;
        self.keys().contains(&key).then_some(v1::TupleMatch::Source)
    }
}

/// How good a match is: original before translated before source only.
pub fn rank(matched: v1::TupleMatch) -> u8 {
    match matched {
        v1::TupleMatch::Original => 3,
        v1::TupleMatch::Translated => 2,
        v1::TupleMatch::Source => 1,
        v1::TupleMatch::Unknown => 0,
    }
}
