//! DNS exchanges: every try of one question from one client socket, from
//! the first query seen to an answer or to the DNS timeout.
//!
//! A query is known by its client socket and message id. Seen again on
//! another interface (the host side of the pod's veth, then the uplink) it
//! is the same try, and an egress sighting says it left the node; a new id
//! for the same question from the same socket is a retry. An answer with an
//! error code decides a `DNS_ERROR`; a good answer ends the exchange
//! quietly; no answer within the timeout after the last try decides
//! `DNS_UNANSWERED`. Pending exchanges are bounded: a query that finds the
//! table full is counted, not followed.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use crate::model::{DnsSeen, Endpoint, Interface, Protocol};

/// Ids remembered per exchange (retries beyond are still counted).
const IDS_PER_EXCHANGE: usize = 16;

/// What identifies one exchange.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeKey {
    /// The client's socket.
    pub client: Endpoint,
    /// The server it asked.
    pub server: Endpoint,
    /// The question's name.
    pub name: String,
    /// The question's type.
    pub qtype: u16,
}

/// A pending (or just decided) exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// Client, server and question.
    pub key: ExchangeKey,
    /// True over TCP.
    pub tcp: bool,
    /// Tries seen.
    pub attempts: u32,
    /// Their message ids (the first [`IDS_PER_EXCHANGE`]).
    ids: Vec<u16>,
    /// The first try.
    pub first_query: SystemTime,
    /// The latest try.
    pub last_query: SystemTime,
    /// An interface a try was seen leaving by.
    pub left: Option<Interface>,
    /// The answer's code and when it came, once answered.
    pub answer: Option<(u8, SystemTime)>,
}

/// What one DNS message did to the table.
#[derive(Debug, PartialEq, Eq)]
pub enum DnsOutcome {
    /// Nothing to report.
    Nothing,
    /// An answer with an error code: the exchange is decided.
    Failed(Exchange),
    /// A query found the table full and is not followed.
    Untracked,
}

/// The pending exchanges.
#[derive(Debug)]
pub struct DnsTable {
    exchanges: HashMap<ExchangeKey, Exchange>,
    /// (client socket, message id) → exchange.
    by_id: HashMap<(Endpoint, u16), ExchangeKey>,
    timeout: Duration,
    capacity: usize,
}

impl DnsTable {
    /// An empty table deciding "unanswered" `timeout` after the last try.
    pub fn new(timeout: Duration, capacity: usize) -> Self {
        Self {
            exchanges: HashMap::new(),
            by_id: HashMap::new(),
            timeout,
            capacity: capacity.max(1),
        }
    }

    /// Exchanges pending.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// Takes one DNS message seen on an interface.
    pub fn observe(&mut self, seen: &DnsSeen) -> DnsOutcome {
        let Some(question) = &seen.message.question else {
            return DnsOutcome::Nothing;
        };
        let tcp = seen.tuple.protocol == Protocol::Tcp;
        if !seen.message.response {
            let client = seen.tuple.src;
            let id = (client, seen.message.id);
            if let Some(key) = self.by_id.get(&id)
                && let Some(exchange) = self.exchanges.get_mut(key)
            {
                // The same try, seen again on another interface.
                if seen.egress {
                    exchange.left = Some(seen.interface.clone());
                }
                return DnsOutcome::Nothing;
            }
            let key = ExchangeKey {
                client,
                server: seen.tuple.dst,
                name: question.name.clone(),
                qtype: question.qtype,
            };
            if !self.exchanges.contains_key(&key) && self.exchanges.len() >= self.capacity {
                return DnsOutcome::Untracked;
            }
            let exchange = self
                .exchanges
                .entry(key.clone())
                .or_insert_with(|| Exchange {
                    key: key.clone(),
                    tcp,
                    attempts: 0,
                    ids: Vec::new(),
                    first_query: seen.time,
                    last_query: seen.time,
                    left: None,
                    answer: None,
                });
            exchange.attempts += 1;
            exchange.last_query = seen.time;
            if seen.egress {
                exchange.left = Some(seen.interface.clone());
            }
            if exchange.ids.len() < IDS_PER_EXCHANGE {
                exchange.ids.push(seen.message.id);
                self.by_id.insert(id, key);
            }
            return DnsOutcome::Nothing;
        }
        let client = seen.tuple.dst;
        let Some(key) = self.by_id.get(&(client, seen.message.id)).cloned() else {
            return DnsOutcome::Nothing;
        };
        let Some(mut exchange) = self.remove(&key) else {
            return DnsOutcome::Nothing;
        };
        if !seen.message.is_error() {
            return DnsOutcome::Nothing;
        }
        exchange.answer = Some((seen.message.rcode, seen.time));
        DnsOutcome::Failed(exchange)
    }

    /// Exchanges whose last try is older than the timeout at `now`: each
    /// decided unanswered.
    pub fn expire(&mut self, now: SystemTime) -> Vec<Exchange> {
        let Some(horizon) = now.checked_sub(self.timeout) else {
            return Vec::new();
        };
        let expired: Vec<ExchangeKey> = self
            .exchanges
            .values()
            .filter(|exchange| exchange.last_query < horizon)
            .map(|exchange| exchange.key.clone())
            .collect();
        expired.iter().filter_map(|key| self.remove(key)).collect()
    }

    fn remove(&mut self, key: &ExchangeKey) -> Option<Exchange> {
        let exchange = self.exchanges.remove(key)?;
        for id in &exchange.ids {
            self.by_id.remove(&(key.client, *id));
        }
        Some(exchange)
    }
}
